//! The `cytoseg` command-line tool.
