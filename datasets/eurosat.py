"""EuroSAT RGB (10 land-cover classes): 2750/<Class>/*.jpg, with CoOp's descriptive names."""
from dassl.data.datasets import DATASET_REGISTRY

from .common import CoOpDataset

NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(CoOpDataset):

    dataset_dir = "eurosat"
    image_subdir = "2750"
    new_cnames = NEW_CNAMES
    folder_per_class = True
