//! Server-generated names (`amq.gen-…` queues, `amq.ctag-…` consumer tags), in RabbitMQ's
//! shape: a prefix and 22 URL-safe base64 characters of randomness.

use rand::Rng;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub fn generate(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + 22);
    s.push_str(prefix);
    for _ in 0..22 {
        s.push(ALPHABET[rng.random_range(0..64)] as char);
    }
    s
}

pub fn queue_name() -> String {
    generate("amq.gen-")
}

pub fn consumer_tag() -> String {
    generate("amq.ctag-")
}
