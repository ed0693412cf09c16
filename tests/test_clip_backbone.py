"""The shared CLIP plumbing against CLIP's own code paths."""
import pytest
import torch

from trainers import class_prompts, clip_encoders
from trainers import clip_backbone as cb


def reference_text_features(clip_model, prompts, tokenized):
    """CoOp's TextEncoder: all 77 tokens through clip's own transformer (LND, its 77x77 mask)."""
    x = prompts + clip_model.positional_embedding
    x = clip_model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = clip_model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokenized.argmax(-1)] @ clip_model.text_projection


@pytest.fixture(scope="module")
def prompts(tiny_clip):
    tokens = cb.tokenize(["a photo of a circle.", "a star", "two large red hexagons on a striped background."])
    return tokens, tiny_clip.token_embedding(tokens).detach()


def test_truncated_text_encoder_equals_full_run_and_encode_text(tiny_clip, prompts):
    tokens, embeddings = prompts
    encoder = clip_encoders.TextEncoder(tiny_clip)
    ours = encoder(embeddings, tokens)
    with torch.no_grad():
        assert torch.allclose(ours, tiny_clip.encode_text(tokens), atol=1e-5)
        assert torch.allclose(ours, reference_text_features(tiny_clip, embeddings, tokens), atol=1e-5)


def test_run_blocks_splits_anywhere(tiny_clip, prompts):
    tokens, embeddings = prompts
    encoder = clip_encoders.TextEncoder(tiny_clip)
    x = encoder.embed(embeddings[:, :20])
    eot = clip_encoders.eot_positions(tokens)
    full = encoder.final_features(encoder.run_blocks(x), eot)
    for split in range(encoder.num_layers + 1):
        hidden = encoder.run_blocks(x, 0, split)
        assert torch.allclose(encoder.final_features(encoder.run_blocks(hidden, split), eot), full, atol=1e-6)


def test_deep_prompts_replace_context_states(tiny_clip, prompts):
    tokens, embeddings = prompts
    encoder = clip_encoders.TextEncoder(tiny_clip)
    x = encoder.embed(embeddings)
    deep = torch.randn(2, x.shape[-1])
    ours = encoder.run_blocks(x, deep_prompts={1: deep})
    hand = encoder.run_blocks(x, 0, 1)
    hand = torch.cat([hand[:, :1], deep.expand(3, -1, -1), hand[:, 3:]], dim=1)
    assert torch.allclose(ours, encoder.run_blocks(hand, 1), atol=1e-6)


def test_class_prompt_assembly_positions(tiny_clip):
    names = ["circle", "heart shape"]
    pieces = class_prompts.ClassPrompts(tiny_clip, names, "X X X X", n_ctx=4)
    ctx = torch.randn(4, 64)
    emb = lambda text: tiny_clip.token_embedding(cb.tokenize([text]))[0].detach()  # noqa: E731
    end = pieces.assemble(ctx, "end")
    assert end.shape == (2, 77, 64)
    assert torch.equal(end[1, 1:5], ctx) and torch.allclose(end[1, 5:8], emb("heart shape.")[1:4])
    middle = pieces.assemble(ctx, "middle")  # SOS ctx[:2] name ctx[2:] . EOS
    assert torch.equal(middle[1, 1:3], ctx[:2]) and torch.allclose(middle[1, 3:5], emb("heart shape")[1:3])
    assert torch.equal(middle[1, 5:7], ctx[2:]) and torch.allclose(middle[1, 7], emb(".")[1])
    front = pieces.assemble(ctx, "front")  # SOS name ctx . EOS
    assert torch.allclose(front[0, 1], emb("circle")[1]) and torch.equal(front[0, 2:6], ctx)
    per_class = torch.randn(2, 4, 64)
    assert torch.equal(pieces.assemble(per_class)[1, 1:5], per_class[1])
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION"):
        pieces.assemble(ctx, "side")


def test_cached_tokenization_equals_clips_and_hands_out_copies():
    """tokenize() and token_count() cache CLIP's BPE per text (EMPL tokenizes its unseen words
    every step): the ids equal clip.tokenize's, and a caller that writes into the result does
    not change what the next call returns."""
    texts = ["X X X X pixel art.", "a photo of a golden retriever.", "X X X X pixel art."]
    first = cb.tokenize(texts)
    assert torch.equal(first, torch.cat([cb.clip.tokenize(t) for t in texts]))
    first.zero_()
    assert torch.equal(cb.tokenize(texts), torch.cat([cb.clip.tokenize(t) for t in texts]))
    assert cb.token_count("golden retriever") == len(cb._tokenizer.encode("golden retriever")) == 2


def test_init_context_from_words(tiny_clip):
    ctx, prefix = class_prompts.init_context(tiny_clip, 16, "a_photo_of_a")
    assert prefix == "a photo of a" and ctx.shape == (4, 64)
    assert torch.allclose(ctx, tiny_clip.token_embedding(cb.tokenize(["a photo of a"]))[0, 1:5])
    ctx, prefix = class_prompts.init_context(tiny_clip, 3, n_sets=5)
    assert prefix == "X X X" and ctx.shape == (5, 3, 64) and 0.01 < ctx.std() < 0.03


class _Backbone:
    def __init__(self, name, checkpoint=""):
        self.NAME, self.CHECKPOINT = name, checkpoint

    def get(self, key, default=None):
        return getattr(self, key, default)


class _Cfg:
    def __init__(self, name, checkpoint=""):
        self.MODEL = type("M", (), {"BACKBONE": _Backbone(name, checkpoint)})()


def test_missing_named_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))

    def offline(url, root):
        raise OSError("network unreachable")

    monkeypatch.setattr(cb.clip, "_download", offline)
    with pytest.raises(FileNotFoundError) as err:
        cb.load_clip(_Cfg("ViT-B/16"))
    message = str(err.value)
    assert "ViT-B-16.pt" in message and str(tmp_path / ".cache" / "clip") in message
    assert "MODEL.BACKBONE.CHECKPOINT" in message


def test_unknown_name_missing_or_corrupt_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="tiny-vit"):
        cb.load_clip(_Cfg("ViT-Z/99"))
    with pytest.raises(FileNotFoundError, match="MODEL.BACKBONE.CHECKPOINT"):
        cb.load_clip(_Cfg("RN50", str(tmp_path / "nope.pt")))
    corrupt = tmp_path / "ViT-B-16.pt"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="corrupt"):
        cb.load_clip(_Cfg("ViT-B/16", str(corrupt)))


def test_checkpoint_round_trip_for_tiny_clip(tiny_clip, tmp_path):
    trained = cb.build_local_clip("tiny-vit")
    with torch.no_grad():
        trained.text_projection.mul_(2.0)
    path = tmp_path / "tiny.pt"
    torch.save(trained.state_dict(), path)
    loaded = cb.load_clip(_Cfg("tiny-vit", str(path)))
    tokens = cb.tokenize(["a circle"])
    with torch.no_grad():
        assert torch.allclose(loaded.encode_text(tokens), trained.encode_text(tokens))
        assert not torch.allclose(loaded.encode_text(tokens), tiny_clip.encode_text(tokens))


def test_precision_rules():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    with pytest.warns(UserWarning, match="fp32"):
        assert cb.resolve_precision("fp16", cpu) == "fp32"
    assert cb.resolve_precision("amp", gpu) == "amp" and cb.resolve_precision("fp16", gpu) == "fp16"
    with pytest.raises(ValueError, match="PREC"):
        cb.resolve_precision("bf8", cpu)
