mod config;
mod model;
fn main() {
    let p = std::env::args().nth(1).unwrap();
    match config::load(std::path::Path::new(&p)) {
        Ok(c) => println!("ok {}", c.contexts.len()),
        Err(e) => println!("{e}"),
    }
}
