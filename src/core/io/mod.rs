//! Image and array file input/output.
