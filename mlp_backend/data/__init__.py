from .datasets import (LOADERS, SCALERS, Dataset, MinMaxScaler, Standardizer, dataset_folder, default_data_root,
                       find_idx_dir, load_cifar10, load_dataset, load_digits, load_fashion_mnist, load_mnist,
                       load_svhn, make_synthetic, one_hot, scaler_from_state, scaler_state, stratified_split)
from .download import DownloadError, download_dataset, download_idx_dataset, fetch
from .formats import DataFormatError, read_cifar10_batch, read_svhn_mat
from .idx import IDXError, read_idx, write_idx

__all__ = ["Dataset", "Standardizer", "MinMaxScaler", "SCALERS", "scaler_state", "scaler_from_state", "one_hot", "LOADERS", "load_svhn", "load_cifar10",
           "DownloadError", "download_dataset", "download_idx_dataset", "fetch", "default_data_root",
           "dataset_folder", "DataFormatError", "read_cifar10_batch", "read_svhn_mat", "load_dataset",
           "load_fashion_mnist", "load_mnist", "load_digits", "make_synthetic", "stratified_split", "find_idx_dir",
           "IDXError", "read_idx", "write_idx"]
