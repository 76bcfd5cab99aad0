//! The `cytoseg` command-line tool (see `cytoseg --help`).

fn main() {
    std::process::exit(cytoseg::cli::main());
}
