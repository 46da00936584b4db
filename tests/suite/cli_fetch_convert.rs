//! `dermlip fetch` against a local stand-in for the hub, and `dermlip convert` from the CLI.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::model_dir;

/// Serves `files` (URL path → bytes) over HTTP/1.1 until the test process ends; 404 otherwise.
fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut stream = stream;
            match files.get(&path) {
                Some(body) => {
                    let head =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body));
                }
                None => {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        }
    });
    format!("http://{addr}")
}

fn dermlip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dermlip")).args(args).output().unwrap()
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dermlip-cli-{name}-{}", std::process::id()))
}

fn fixture_file(name: &str) -> Vec<u8> {
    std::fs::read(model_dir("tiny-gelu").join(name)).unwrap()
}

#[test]
fn fetch_downloads_a_checkpoint_that_loads() {
    let mut files = HashMap::new();
    for name in ["open_clip_config.json", "open_clip_model.safetensors"] {
        files.insert(format!("/owner/tiny/resolve/main/{name}"), fixture_file(name));
    }
    let endpoint = serve(files);
    let out = tmp("fetch");
    let o = dermlip(&["fetch", "hf-hub:owner/tiny", "--endpoint", &endpoint, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(out.join("open_clip_model.safetensors")).unwrap(),
        fixture_file("open_clip_model.safetensors")
    );
    assert!(!out.join("open_clip_model.safetensors.part").exists());
    let o = dermlip(&["embed-text", "melanoma", "--model", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn fetch_falls_back_to_the_pytorch_file() {
    let mut files = HashMap::new();
    files.insert("/o/bin/resolve/v1/open_clip_config.json".to_string(), fixture_file("open_clip_config.json"));
    files.insert(
        "/o/bin/resolve/v1/open_clip_pytorch_model.bin".to_string(),
        fixture_file("open_clip_pytorch_model.bin"),
    );
    let endpoint = serve(files);
    let out = tmp("fetch-bin");
    let o = dermlip(&["fetch", "o/bin", "--revision", "v1", "--endpoint", &endpoint, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("open_clip_pytorch_model.bin").is_file());
}

#[test]
fn fetch_errors_are_one_clear_line() {
    let endpoint = serve(HashMap::new());
    let out = tmp("fetch-missing");
    let o = dermlip(&["fetch", "o/none", "--endpoint", &endpoint, "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not an open_clip checkpoint"), "{err}");
    let o = dermlip(&["fetch", "not-a-repo", "--out", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a hub repository"));
    let o = dermlip(&["fetch", "o/x", "--endpoint", "http://127.0.0.1:1", "--out", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("download failed"));
}

#[test]
fn convert_writes_a_bundle_and_refuses_bad_options() {
    let out = tmp("convert");
    let model = model_dir("tiny-gelu");
    let o = dermlip(&[
        "convert",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--label-sets",
        "ham7,pad6",
        "--image-weights",
        "int8",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["image_weights"], "int8");
    assert_eq!(manifest["label_sets"].as_array().unwrap().len(), 2);
    let o = dermlip(&[
        "convert",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--label-sets",
        "nope",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown label set \"nope\""));
    let o = dermlip(&["convert", "--model", "/nonexistent", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
}
