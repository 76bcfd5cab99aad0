//! Segmentation metrics (in progress).
