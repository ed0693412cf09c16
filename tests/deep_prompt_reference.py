"""The independent computation the deep-prompt tests (MaPLe, PromptSRC) compare with: CLIP's own
blocks (nn.MultiheadAttention, LND layout, all 77 tokens with CLIP's causal mask) with the
prompts written in by hand, not through trainers/clip_backbone.py's block runner."""
import torch

from trainers import clip_backbone as cb


def perturb_learned(learner, scale=0.1, seed=0):
    """Move every learned tensor away from its initialisation (deterministically)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))


@torch.no_grad()
def prompted_features(clip_model, prompts, tokenized, text_deep, images, vision_first, vision_deep):
    """Normalised (text [C, D], image [B, D]) of a CLIP with prompts inside both encoders.

    prompts [C, 77, d]: the text prompt embeddings, context at positions 1 .. M; text_deep
    {block i: [M, d]} written over the context positions at the input of text block i;
    vision_first [M_v, w] appended after the class and patch tokens before ln_pre; vision_deep
    {block i: [M_v, w]} written over those M_v tokens at the input of vision block i.
    """
    x = (prompts + clip_model.positional_embedding).permute(1, 0, 2)  # [77, C, d]
    for i, block in enumerate(clip_model.transformer.resblocks):
        if i in text_deep:
            x = x.clone()
            x[1 : 1 + text_deep[i].shape[0]] = text_deep[i].unsqueeze(1)
        x = block(x)
    x = clip_model.ln_final(x.permute(1, 0, 2))
    text = x[torch.arange(x.shape[0]), tokenized.argmax(-1)] @ clip_model.text_projection

    visual = clip_model.visual
    y = visual.conv1(images).flatten(2).transpose(1, 2)
    y = torch.cat([visual.class_embedding.expand(len(y), 1, -1), y], dim=1) + visual.positional_embedding
    y = torch.cat([y, vision_first.expand(len(y), -1, -1)], dim=1)
    y = visual.ln_pre(y).permute(1, 0, 2)  # [tokens, B, w]
    for i, block in enumerate(visual.transformer.resblocks):
        if i in vision_deep:
            y = y.clone()
            y[-vision_first.shape[0]:] = vision_deep[i].unsqueeze(1)
        y = block(y)
    image = visual.ln_post(y[0]) @ visual.proj
    return cb.l2_normalize(text), cb.l2_normalize(image)
