//! Placeholder until its issue lands.
fn main() {
    eprintln!("usage: client (not implemented yet)");
    std::process::exit(2);
}
