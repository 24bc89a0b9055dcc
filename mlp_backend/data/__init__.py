from .datasets import (LOADERS, Dataset, Standardizer, find_idx_dir, load_dataset, load_digits, load_fashion_mnist,
                       load_mnist, make_synthetic, stratified_split)
from .idx import IDXError, read_idx, write_idx

__all__ = ["Dataset", "Standardizer", "LOADERS", "load_dataset", "load_fashion_mnist", "load_mnist", "load_digits",
           "make_synthetic", "stratified_split", "find_idx_dir", "IDXError", "read_idx", "write_idx"]
