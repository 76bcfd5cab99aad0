//! The `cytoseg` command-line tool (see `cytoseg --help`).

fn main() {
    std::process::exit(cytoseg_cli::main());
}
