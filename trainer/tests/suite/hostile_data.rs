//! Hostile dataset rows: `filename`s that leave the image folder, FIFOs, devices, symlinks out,
//! and zip members that inflate past the sample cap. Each is a counted, skipped sample: never an
//! abort, a hang, or a read outside the dataset.

use std::io::Write;
use std::path::Path;

use dermlip_trainer::data::{contained_path, CsvSpec, Dataset, Reader, MAX_SAMPLE_BYTES};

fn spec(csv: &Path, images: &Path) -> CsvSpec {
    CsvSpec {
        csv: csv.to_path_buf(),
        images: vec![images.to_path_buf()],
        image_key: "filename".into(),
        caption_key: "caption".into(),
        label_key: None,
    }
}

fn read_all(ds: &Dataset) -> Vec<(String, Result<Vec<u8>, String>)> {
    let mut reader = Reader::default();
    ds.samples.iter().map(|s| (s.name.clone(), reader.read(ds, s))).collect()
}

#[test]
fn paths_are_normalised_and_kept_inside() {
    assert_eq!(contained_path("a/./b/../c.png").as_deref(), Some("a/c.png"));
    assert_eq!(contained_path("./x.png").as_deref(), Some("x.png"));
    for bad in ["../x.png", "/etc/passwd", "a/../../x.png", "", ".", "a/..", "x\0.png"] {
        assert_eq!(contained_path(bad), None, "{bad:?}");
    }
}

#[test]
fn csv_paths_leaving_the_folder_fifos_and_devices_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(images.join("sub")).unwrap();
    std::fs::write(images.join("a.png"), b"image a").unwrap();
    std::fs::write(tmp.path().join("secret.png"), b"outside").unwrap();
    let fifo = images.join("fifo.png");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().map(|s| s.success()).unwrap_or(false);
    std::os::unix::fs::symlink("/dev/zero", images.join("zero.png")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.png"), images.join("escape.png")).unwrap();
    let csv = tmp.path().join("data.csv");
    let outside = tmp.path().join("secret.png");
    std::fs::write(
        &csv,
        format!(
            "filename,caption\na.png,ok\n../secret.png,up\n{},absolute\nsub/../a.png,normalised\n\
             fifo.png,fifo\nzero.png,device\nescape.png,symlink out\n/dev/zero,device abs\n",
            outside.display()
        ),
    )
    .unwrap();
    let ds = Dataset::from_csv(&spec(&csv, &images)).unwrap();
    assert_eq!(ds.report.unsafe_paths, 3, "{:?}", ds.report);
    assert!(ds.report.problems() >= 3);
    assert!(ds.report.examples.iter().any(|e| e.contains("../secret.png")), "{:?}", ds.report.examples);
    let got = read_all(&ds);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a.png", "a.png", "fifo.png", "zero.png", "escape.png"]);
    assert_eq!(got[0].1.as_deref().unwrap(), b"image a");
    assert_eq!(got[1].1.as_deref().unwrap(), b"image a");
    if made {
        let e = got[2].1.as_ref().unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
    let e = got[3].1.as_ref().unwrap_err();
    assert!(e.contains("not a regular file"), "{e}");
    let e = got[4].1.as_ref().unwrap_err();
    assert!(e.contains("outside the image folder"), "{e}");
}

#[test]
fn zip_bomb_member_is_a_skipped_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let zip_path = images.join("part1.zip");
    {
        let f = std::fs::File::create(&zip_path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        z.start_file("bomb.png", opts).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..(MAX_SAMPLE_BYTES >> 20) + 2 {
            z.write_all(&chunk).unwrap();
        }
        z.start_file("ok.png", opts).unwrap();
        z.write_all(b"small").unwrap();
        z.finish().unwrap();
    }
    assert!(std::fs::metadata(&zip_path).unwrap().len() < 1 << 20);
    let csv = tmp.path().join("data.csv");
    std::fs::write(&csv, "filename,caption\nbomb.png,bomb\nok.png,fine\n").unwrap();
    let ds = Dataset::from_csv(&spec(&csv, &images)).unwrap();
    let got = read_all(&ds);
    assert_eq!(got.len(), 2);
    let e = got[0].1.as_ref().unwrap_err();
    assert!(e.contains("bomb.png"), "{e}");
    assert_eq!(got[1].1.as_deref().unwrap(), b"small");
}
