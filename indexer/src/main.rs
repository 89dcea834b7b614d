fn main() {
    println!("indexer: not yet");
}
