fn main() {
    println!("ecloud: not yet");
}
