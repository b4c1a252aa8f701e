//! Helpers of the media scenario tests: uploads, raw downloads, test images.
#![allow(dead_code)]

use std::io::Cursor;

use complement_tests::{Client, assert_ok};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{DynamicImage, Frame, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use reqwest::Method;
use reqwest::header::HeaderMap;

pub const CSP: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// Uploads `bytes`; returns the mxc:// URI.
pub async fn upload(client: &Client, bytes: Vec<u8>, content_type: &str, filename: Option<&str>) -> String {
    let path = match filename {
        Some(name) => format!("/_matrix/media/v3/upload?filename={}", complement_tests::enc(name)),
        None => "/_matrix/media/v3/upload".to_owned(),
    };
    let body = assert_ok(client.send_raw(Method::POST, &path, content_type, bytes).await);
    let uri = body["content_uri"].as_str().unwrap_or_else(|| panic!("no content_uri in {body}")).to_owned();
    assert!(uri.starts_with("mxc://localhost/"), "{uri}");
    uri
}

/// `server/id` of an mxc:// URI.
pub fn mxc_path(uri: &str) -> &str {
    uri.strip_prefix("mxc://").expect("an mxc:// URI")
}

pub fn download_path(uri: &str) -> String {
    format!("/_matrix/client/v1/media/download/{}", mxc_path(uri))
}

pub fn thumbnail_path(uri: &str, query: &str) -> String {
    format!("/_matrix/client/v1/media/thumbnail/{}?{query}", mxc_path(uri))
}

/// A raw response: status, headers, body.
pub struct Raw {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Asserts the security headers every media response carries.
    #[track_caller]
    pub fn assert_secure(&self) -> &Self {
        assert_eq!(self.header("content-security-policy"), CSP, "CSP of a {} response", self.status);
        assert_eq!(self.header("x-content-type-options"), "nosniff", "nosniff of a {} response", self.status);
        self
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, errcode: &str) -> &Self {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.json()["errcode"], errcode, "body: {}", String::from_utf8_lossy(&self.body));
        self
    }
}

/// GET with extra headers.
pub async fn get(client: &Client, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut req = client.builder(Method::GET, path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body").to_vec();
    Raw { status, headers, body }
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode test image");
    out.into_inner()
}

/// A `w`×`h` gradient image in `format`.
pub fn image_bytes(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
    let image = RgbImage::from_fn(w, h, |x, y| Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, ((x ^ y) & 0xff) as u8]));
    encode(&DynamicImage::ImageRgb8(image), format)
}

/// An animated GIF of `frames` frames of `w`×`h`; `noisy` makes it compress badly.
pub fn animated_gif(w: u32, h: u32, frames: u32, noisy: bool) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        encoder.set_repeat(Repeat::Infinite).unwrap();
        for i in 0..frames {
            let bytes = noise((w * h) as usize, u64::from(i) + 7);
            let image = RgbaImage::from_fn(w, h, |x, y| {
                let n = if noisy { bytes[(y * w + x) as usize] } else { 0 };
                Rgba([(i * 80) as u8 ^ n, (x * 255 / w) as u8, (y * 255 / h) as u8, 255])
            });
            encoder.encode_frame(Frame::new(image)).unwrap();
        }
    }
    out
}

/// The format and dimensions of an image.
#[track_caller]
pub fn dimensions(bytes: &[u8]) -> (ImageFormat, u32, u32) {
    let reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().expect("readable");
    let format = reader.format().expect("an image format");
    let image = reader.decode().expect("the thumbnail decodes");
    (format, image.width(), image.height())
}

/// A PNG whose header claims `w`×`h` pixels, with a tiny (empty) image stream.
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    // A zlib stream of a few KB that would inflate to gigabytes of zeros.
    chunk(b"IDAT", &[0x78, 0x9c, 0xed, 0xc1, 0x01, 0x0d, 0x00, 0x00, 0x00, 0xc2, 0xa0, 0xf7, 0x4f, 0x6d, 0x0e]);
    chunk(b"IEND", &[]);
    png
}

/// Files stored under `<data_dir>/media/content`.
pub fn stored_files(data_dir: &std::path::Path) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        entries
            .map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() { walk(&e.path()) } else { 1 }
            })
            .sum()
    }
    walk(&data_dir.join("media").join("content"))
}
