//! Placeholder until its issue lands.
fn main() {
    eprintln!("usage: server (not implemented yet)");
    std::process::exit(2);
}
