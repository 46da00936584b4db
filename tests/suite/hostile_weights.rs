//! Hostile weight files: hand-built safetensors headers and PyTorch pickles (in a zip, as
//! `torch.save` writes them) that must end in a clean `Error`: no panic, no stack overflow, no
//! code run, and no allocation beyond what the file holds.

use crate::common;

use std::path::PathBuf;

use common::*;
use dermlip::weights::StateDict;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dermlip-hostile-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `bytes` and reads them with [`StateDict::from_file`]: the error message.
fn file_err(name: &str, bytes: &[u8]) -> String {
    let dir = scratch(name);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let r = StateDict::from_file(&p);
    std::fs::remove_dir_all(&dir).ok();
    match r {
        Ok(sd) => panic!("{name} loaded ({} tensors)", sd.len()),
        Err(e) => e.to_string(),
    }
}

fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

// ---- safetensors -------------------------------------------------------------------------

#[test]
fn safetensors_huge_declared_tensor_is_refused_before_allocating() {
    // 4 data bytes; the header claims a [100000, 100000] f32 tensor spanning 40 GB.
    let h = r#"{"w":{"dtype":"F32","shape":[100000,100000],"data_offsets":[0,40000000000]}}"#;
    let msg = file_err("huge.safetensors", &safetensors(h, &[0; 4]));
    assert!(msg.contains("'w'"), "{msg}");
    let h = r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#;
    let msg = file_err("overflow.safetensors", &safetensors(h, &[0; 4]));
    assert!(msg.contains("'w'"), "{msg}");
}

#[test]
fn safetensors_bad_headers_are_errors() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("offsets past end", safetensors(r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &[0; 4])),
        ("reversed offsets", safetensors(r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, &[0; 4])),
        ("size mismatch", safetensors(r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, &[0; 8])),
        (
            "overlap",
            safetensors(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                &[0; 12],
            ),
        ),
        ("unknown dtype", safetensors(r#"{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4])),
        ("negative dim", safetensors(r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, &[0; 4])),
        (
            "deep rank",
            safetensors(r#"{"w":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}"#, &[0; 1]),
        ),
        ("not an object", safetensors("[1,2,3]", &[])),
        ("deep json", safetensors(&format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)), &[])),
        ("no tensors", safetensors(r#"{"__metadata__":{"a":"b"}}"#, &[])),
        ("header longer than file", {
            let mut b = u64::MAX.to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
        ("header 99 MB claimed", {
            let mut b = (99u64 << 20).to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
        ("non-utf8 header", {
            let mut b = 4u64.to_le_bytes().to_vec();
            b.extend_from_slice(b"{\xff\xfe}");
            b
        }),
    ];
    for (what, bytes) in cases {
        let r = StateDict::from_safetensors_bytes(bytes.clone());
        assert!(r.is_err(), "{what}: accepted");
        if bytes.len() > 8 && bytes[8] == b'{' {
            file_err("case.safetensors", &bytes);
        }
    }
}

#[test]
fn safetensors_many_tensors_read_in_linear_time() {
    // 20 000 one-byte tensors: burn-store re-parsed the header per tensor (20 000 × 1 MB of JSON).
    let n = 20_000;
    let mut header = String::from("{");
    for i in 0..n {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(r#""t{i:05}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{}]}}"#, i + 1));
    }
    header.push('}');
    let start = std::time::Instant::now();
    let sd = StateDict::from_safetensors_bytes(safetensors(&header, &vec![7u8; n])).unwrap();
    assert_eq!(sd.len(), n);
    assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
}

#[test]
fn safetensors_roundtrip_still_reads() {
    let path = model_dir("tiny-gelu").join("open_clip_model.safetensors");
    let sd = StateDict::from_file(&path).unwrap();
    let again = StateDict::from_safetensors_bytes(sd.to_safetensors_bytes().unwrap()).unwrap();
    assert_eq!(sd.len(), again.len());
    for k in sd.keys() {
        assert_eq!(sd.get(k).unwrap().as_bytes(), again.get(k).unwrap().as_bytes(), "{k}");
        assert_eq!(sd.shape(k), again.shape(k), "{k}");
    }
}

// ---- PyTorch pickles in a torch.save zip ---------------------------------------------------

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// A stored (uncompressed) zip as `torch.save` writes it: `archive/data.pkl`, `archive/data/N`.
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let mut local = Vec::new();
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        local.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        local.extend_from_slice(&crc.to_le_bytes());
        local.extend_from_slice(&(data.len() as u32).to_le_bytes());
        local.extend_from_slice(&(data.len() as u32).to_le_bytes());
        local.extend_from_slice(&(name.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes());
        local.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&local);
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn torch_file(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut entries: Vec<(String, &[u8])> = vec![("archive/data.pkl".into(), pickle)];
    entries.push(("archive/version".into(), b"3\n"));
    for (k, d) in storages {
        entries.push((format!("archive/data/{k}"), d));
    }
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    zip(&refs)
}

/// Protocol-2 pickle writer, just the opcodes the tests need.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Self {
        Pickle(vec![0x80, 2])
    }
    fn op(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &str) -> Self {
        let mut p = self.op(b"X");
        p.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.op(s.as_bytes())
    }
    fn int(self, v: i32) -> Self {
        let mut p = self.op(b"J");
        p.0.extend_from_slice(&v.to_le_bytes());
        p
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn ints_tuple(self, v: &[i32]) -> Self {
        let mut p = self.op(b"(");
        for &x in v {
            p = p.int(x);
        }
        p.op(b"t")
    }
    /// `{name: _rebuild_tensor_v2(storage '0' of `numel` floats, 0, shape, stride, False, {})}`.
    fn tensor_dict(name: &str, numel: i32, shape: &[i32], stride: &[i32]) -> Vec<u8> {
        Pickle::new()
            .op(b"}(")
            .str(name)
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .str("storage")
            .global("torch", "FloatStorage")
            .str("0")
            .str("cpu")
            .int(numel)
            .op(b"tQ")
            .int(0)
            .ints_tuple(shape)
            .ints_tuple(stride)
            .op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")R")
            .op(b"tR")
            .op(b"u.")
            .0
    }
}

#[test]
fn handmade_torch_file_reads() {
    // The builder itself is right: a well-formed 2×2 tensor loads.
    let data: Vec<u8> = [1f32, 2., 3., 4.].iter().flat_map(|v| v.to_le_bytes()).collect();
    let bytes = torch_file(&Pickle::tensor_dict("w", 4, &[2, 2], &[2, 1]), &[("0", &data)]);
    let dir = scratch("ok");
    let p = dir.join("ok.bin");
    std::fs::write(&p, bytes).unwrap();
    let sd = StateDict::from_file(&p).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(sd.shape("w"), Some(&[2usize, 2][..]));
}

#[test]
fn pickle_zero_stride_view_is_refused_before_allocating() {
    // One float of storage viewed as [40000, 40000] (6.4 GB once gathered).
    let data = 1f32.to_le_bytes();
    let bytes = torch_file(&Pickle::tensor_dict("w", 1, &[40000, 40000], &[0, 0]), &[("0", &data)]);
    assert!(bytes.len() < 1024);
    let msg = file_err("zero-stride.bin", &bytes);
    assert!(msg.contains("'w'") && msg.contains("zero-stride.bin"), "{msg}");
}

#[test]
fn pickle_huge_declared_storage_is_an_error() {
    let data = 1f32.to_le_bytes();
    let bytes = torch_file(&Pickle::tensor_dict("w", i32::MAX, &[i32::MAX], &[1]), &[("0", &data)]);
    file_err("huge-storage.bin", &bytes);
}

#[test]
fn pickle_code_paths_execute_nothing() {
    let marker = std::env::temp_dir().join(format!("dermlip-pwned-{}", std::process::id()));
    let cmd = format!("touch {}", marker.display());
    let p = || Pickle::new();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("GLOBAL+REDUCE", p().global("os", "system").op(b"(").str(&cmd).op(b"tR.").0),
        ("STACK_GLOBAL", p().str("os").str("system").op(b"\x93(").str(&cmd).op(b"tR.").0),
        ("INST", p().op(b"(").str(&cmd).op(b"ios\nsystem\n.").0),
        ("OBJ", p().op(b"(").global("os", "system").str(&cmd).op(b"o.").0),
        ("NEWOBJ", p().global("os", "system").op(b"(").str(&cmd).op(b"t\x81.").0),
        ("BUILD", p().global("os", "system").op(b")R}").op(b"(").str("x").str(&cmd).op(b"ub.").0),
        ("in a state dict", p().op(b"}(").str("w").global("os", "system").op(b"(").str(&cmd).op(b"tRu.").0),
    ];
    for (what, pickle) in cases {
        let bytes = torch_file(&pickle, &[("0", &1f32.to_le_bytes())]);
        let msg = file_err("code.bin", &bytes);
        assert!(!marker.exists(), "{what}: the pickle ran a command ({msg})");
    }
}

#[test]
fn pickle_memo_bomb_and_deep_nesting_are_errors() {
    // Memo bomb: a list of 10 references to the previous list, 40 times over.
    let mut bomb = Pickle::new().op(b"]q\x00");
    for _ in 0..40 {
        bomb = bomb.op(b"(");
        for _ in 0..10 {
            bomb = bomb.op(b"h\x00");
        }
        bomb = bomb.op(b"lq\x00");
    }
    let bomb = bomb.op(b"}(").str("w").op(b"h\x00u.").0;
    // Deep nesting: 200 000 nested lists, then 200 000 MARKs, then 200 000 nested tuples.
    let n = 200_000;
    let lists = Pickle::new().op(&b"]".repeat(n)).op(&b"a".repeat(n - 1)).op(b".").0;
    let marks = Pickle::new().op(&b"(".repeat(n)).op(b".").0;
    let tuples = Pickle::new().op(b")").op(&b"\x85".repeat(n)).op(b".").0;
    let dicts = Pickle::new().op(&b"}(X\x01\x00\x00\x00k".repeat(n)).op(&b"u".repeat(n - 1)).op(b".").0;
    for (what, pickle) in
        [("memo bomb", bomb), ("lists", lists), ("marks", marks), ("tuples", tuples), ("dicts", dicts)]
    {
        let bytes = torch_file(&pickle, &[]);
        let msg = file_err("nest.bin", &bytes);
        assert!(!msg.is_empty(), "{what}");
    }
}

// ---- names and shapes checked against the config before reading ----------------------------

fn tiny_expected() -> dermlip::weights::ExpectedTensors {
    let text = std::fs::read_to_string(model_dir("tiny-gelu").join("open_clip_config.json")).unwrap();
    let cfg = dermlip::ModelFileConfig::from_json_str(&text).unwrap();
    let mut expected = dermlip::weights::ExpectedTensors::default();
    dermlip::Clip::new(&cfg.model, &burn::tensor::Device::flex())
        .visit_tensors(&mut expected, dermlip::model::clip::Towers::Both)
        .unwrap();
    expected
}

#[test]
fn expected_shapes_are_checked_from_the_header() {
    let expected = tiny_expected();
    let path = model_dir("tiny-gelu").join("open_clip_model.safetensors");
    let sd = StateDict::from_file_expecting(&path, &expected).unwrap();
    assert_eq!(sd.len(), StateDict::from_file(&path).unwrap().len());
    let sd = StateDict::from_file_expecting(&model_dir("tiny-gelu").join("open_clip_pytorch_model.bin"), &expected);
    assert!(sd.is_ok(), "{:?}", sd.err());
    // A header that declares text_projection [8, 7] (file holds the bytes): refused by name,
    // with both shapes, before the data is read.
    let want = expected.shape("text_projection").unwrap().to_vec();
    let bad = [want[0], want[1] - 1];
    let n = bad[0] * bad[1];
    let h = format!(
        r#"{{"text_projection":{{"dtype":"F32","shape":[{},{}],"data_offsets":[0,{}]}}}}"#,
        bad[0],
        bad[1],
        4 * n
    );
    let bytes = safetensors(&h, &vec![0u8; 4 * n]);
    let msg = StateDict::from_safetensors_bytes_expecting(bytes, &expected).err().unwrap().to_string();
    assert!(
        msg.contains("'text_projection'") && msg.contains(&format!("{bad:?}")) && msg.contains(&format!("{want:?}")),
        "{msg}"
    );
}

#[test]
fn total_declared_bytes_are_capped_by_the_config() {
    let expected = tiny_expected();
    // One unknown tensor larger than the tiny model could ever use (the file holds its bytes).
    let n = (expected.byte_budget() + 1) as usize;
    let h = format!(r#"{{"junk":{{"dtype":"U8","shape":[{n}],"data_offsets":[0,{n}]}}}}"#);
    let msg = StateDict::from_safetensors_bytes_expecting(safetensors(&h, &vec![0u8; n]), &expected)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("more than") && msg.contains("'junk'"), "{msg}");
}

#[test]
fn cli_refuses_a_misshaped_header_through_the_config() {
    let dir = scratch("cli");
    std::fs::copy(model_dir("tiny-gelu").join("open_clip_config.json"), dir.join("open_clip_config.json")).unwrap();
    let h = r#"{"logit_scale":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}"#;
    std::fs::write(dir.join("open_clip_model.safetensors"), safetensors(h, &[0; 12])).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dermlip"))
        .args(["embed-image", "--model", dir.to_str().unwrap()])
        .arg(fixtures().join("images/astronaut_512_q90_420.jpg"))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("'logit_scale' has shape [3] in the checkpoint but the model expects []"), "{err}");
}

#[test]
fn an_integer_tensor_under_a_parameter_name_is_refused() {
    // The valid tiny checkpoint with `logit_scale` relabelled as an integer: its 4 bytes must not
    // quietly load as a number.
    let text = std::fs::read_to_string(model_dir("tiny-gelu").join("open_clip_config.json")).unwrap();
    let cfg = dermlip::ModelFileConfig::from_json_str(&text).unwrap();
    let mut sd = StateDict::from_file(&model_dir("tiny-gelu").join("open_clip_model.safetensors")).unwrap();
    let scale = sd.remove("logit_scale").unwrap();
    let bits = scale.convert::<f32>().try_to_vec::<f32>().unwrap()[0].to_bits() as i32;
    sd.insert("logit_scale", burn::tensor::TensorData::new(vec![bits], [0usize; 0]));
    let device = burn::tensor::Device::flex();
    let msg = dermlip::Clip::from_state_dict(&cfg.model, sd, &device).err().expect("refused").to_string();
    assert!(msg.contains("'logit_scale'") && msg.contains("floating point"), "{msg}");
}

// ---- a bounded fuzz pass over the loader ---------------------------------------------------

/// xorshift64*: deterministic mutations without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A mutation of `src` aimed at what a loader parses: the first and last 4 KiB hold the
/// safetensors header, the pickle and the zip directories; the rest is tensor data.
fn mutate_weights(rng: &mut XorShift, src: &[u8]) -> Vec<u8> {
    let mut m = src.to_vec();
    let pos = |rng: &mut XorShift, len: usize| match rng.below(4) {
        0 | 1 => rng.below(len.min(4096)),
        2 => len - 1 - rng.below(len.min(4096)),
        _ => rng.below(len),
    };
    match rng.below(5) {
        0 => m.truncate(pos(rng, src.len())),
        1 => {
            for _ in 0..1 + rng.below(8) {
                let i = pos(rng, m.len());
                m[i] ^= 1 << rng.below(8);
            }
        }
        2 => {
            // A digit or a byte replaced by an extreme value (sizes, offsets, shapes, lengths).
            let i = pos(rng, m.len());
            m[i] = [b'9', b'0', 0xFF, 0x00, b'-', b'"'][rng.below(6)];
        }
        3 => {
            let i = pos(rng, m.len());
            let n = 1 + rng.below(16);
            m.splice(i..i, std::iter::repeat_n([0xFFu8, b'9', 0][rng.below(3)], n));
        }
        _ => {
            let (i, j) = (pos(rng, m.len()), pos(rng, m.len()));
            let (a, b) = (i.min(j), i.max(j));
            m.drain(a..b.min(a + 64));
        }
    }
    m
}

/// Mutated copies of the tiny fixture checkpoint (safetensors and PyTorch `.bin`) through the
/// readers and the strict model loader: every one ends in a model or an `Error`, never a panic
/// (an allocation failure would abort the test binary, which fails the test too).
#[test]
fn fuzz_weight_file_mutations_never_panic() {
    let dir = model_dir("tiny-gelu");
    let text = std::fs::read_to_string(dir.join("open_clip_config.json")).unwrap();
    let cfg = dermlip::ModelFileConfig::from_json_str(&text).unwrap();
    let expected = tiny_expected();
    let device = burn::tensor::Device::flex();
    let st = std::fs::read(dir.join("open_clip_model.safetensors")).unwrap();
    let bin = std::fs::read(dir.join("open_clip_pytorch_model.bin")).unwrap();
    let scratch = scratch("fuzz");
    let mut rng = XorShift(0x5EED_0F_3E16_4751);
    let start = std::time::Instant::now();
    let (mut runs, mut loaded, mut panics) = (0usize, 0usize, Vec::new());
    while runs < 300 && start.elapsed() < std::time::Duration::from_secs(12) {
        let safetensors_file = runs % 2 == 0;
        let m = mutate_weights(&mut rng, if safetensors_file { &st } else { &bin });
        let path = scratch.join(if safetensors_file { "m.safetensors" } else { "m.bin" });
        std::fs::write(&path, &m).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let read = if runs % 3 == 0 {
                StateDict::from_file(&path)
            } else {
                StateDict::from_file_expecting(&path, &expected)
            };
            read.and_then(|sd| dermlip::Clip::from_state_dict(&cfg.model, sd, &device)).is_ok()
        }));
        match r {
            Ok(ok) => loaded += ok as usize,
            Err(_) => {
                let keep = std::env::temp_dir().join(format!("dermlip-weights-fuzz-{runs}"));
                std::fs::write(&keep, &m).unwrap();
                panics.push(keep.display().to_string());
            }
        }
        runs += 1;
    }
    std::fs::remove_dir_all(&scratch).ok();
    println!("fuzz: {runs} mutated weight files in {:?}, {loaded} still loaded", start.elapsed());
    assert!(runs >= 50, "only {runs} mutations ran");
    assert!(panics.is_empty(), "panicked on: {panics:?}");
}
