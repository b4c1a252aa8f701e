//! Making thumbnails with the `image` crate: choosing the size, checking an image
//! before decoding it, scaling or cropping it, and animated thumbnails.
//!
//! Everything here is CPU-bound and blocking; callers run it on blocking threads.

use std::io::Cursor;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, DynamicImage, Frame, ImageDecoder, ImageFormat, ImageReader, Limits};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Scale,
    Crop,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Scale => "scale",
            Method::Crop => "crop",
        }
    }
}

/// The sizes the spec recommends; each request is served by the smallest that is
/// at least as large as asked, so a media file has at most these thumbnails.
pub const SIZES: [(u32, u32, Method); 5] = [
    (32, 32, Method::Crop),
    (96, 96, Method::Crop),
    (320, 240, Method::Scale),
    (640, 480, Method::Scale),
    (800, 600, Method::Scale),
];

/// The recommended size that serves a request; `None` when the request is larger
/// than all of them (then the original image is served).
pub fn choose_size(width: u32, height: u32, method: Method) -> Option<(u32, u32)> {
    SIZES.iter().find(|(w, h, m)| *m == method && *w >= width && *h >= height).map(|(w, h, _)| (*w, *h))
}

/// Why there is no thumbnail.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ThumbnailError {
    #[error("the content is not an image that can be thumbnailed")]
    NotAnImage,
    #[error("the image is too large to thumbnail")]
    TooLarge,
    #[error("the image cannot be decoded: {0}")]
    Malformed(String),
}

/// What the header of an image says, read before anything is decoded.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub animated: bool,
}

/// Reads the format and dimensions from the header, refuses images over
/// `max_pixels`, and finds out whether the image is animated.
pub fn probe(bytes: &[u8], max_pixels: u64) -> Result<Probe, ThumbnailError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ThumbnailError::Malformed(e.to_string()))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP)) => f,
        _ => return Err(ThumbnailError::NotAnImage),
    };
    let (width, height) = reader.into_dimensions().map_err(|e| ThumbnailError::Malformed(e.to_string()))?;
    if width == 0 || height == 0 {
        return Err(ThumbnailError::Malformed("the image has no pixels".into()));
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ThumbnailError::TooLarge);
    }
    let malformed = |e: image::ImageError| ThumbnailError::Malformed(e.to_string());
    let animated = match format {
        ImageFormat::Gif => {
            let decoder = GifDecoder::new(Cursor::new(bytes)).map_err(malformed)?;
            decoder.into_frames().take(2).filter(Result::is_ok).count() > 1
        }
        ImageFormat::Png => PngDecoder::new(Cursor::new(bytes)).and_then(|d| d.is_apng()).map_err(malformed)?,
        ImageFormat::WebP => WebPDecoder::new(Cursor::new(bytes)).map_err(malformed)?.has_animation(),
        _ => false,
    };
    Ok(Probe { format, width, height, animated })
}

/// The content type of an image format we thumbnail.
pub fn mime(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Gif => "image/gif",
        ImageFormat::WebP => "image/webp",
        _ => "image/png",
    }
}

/// Decoder limits: nothing larger than the probe said, and memory in proportion.
fn limits(probe: &Probe) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(probe.width);
    limits.max_image_height = Some(probe.height);
    // 16-bit RGBA plus room for the decoder's own buffers.
    limits.max_alloc = Some(u64::from(probe.width) * u64::from(probe.height) * 8 + 64 * 1024 * 1024);
    limits
}

/// A finished thumbnail.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Whether the original already fits the requested box (thumbnails never upscale).
pub fn fits(probe: &Probe, width: u32, height: u32) -> bool {
    probe.width <= width && probe.height <= height
}

/// Decodes the (first frame of the) image within the limits.
pub fn decode(bytes: &[u8], probe: &Probe) -> Result<DynamicImage, ThumbnailError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), probe.format);
    reader.limits(limits(probe));
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => ThumbnailError::TooLarge,
        other => ThumbnailError::Malformed(other.to_string()),
    })
}

/// Decodes the image for thumbnails of at most `need` pixels each way. A JPEG is
/// decoded at the smallest DCT scale (1/8, 1/4, 1/2 or 1) that still covers
/// `need`: a 12-megapixel photo for a 320×240 thumbnail decodes as 500×375,
/// several times faster than in full. Other formats decode in full.
pub fn decode_for(bytes: &[u8], probe: &Probe, need: (u32, u32)) -> Result<DynamicImage, ThumbnailError> {
    if probe.format != ImageFormat::Jpeg {
        return decode(bytes, probe);
    }
    let malformed = |e: jpeg_decoder::Error| ThumbnailError::Malformed(e.to_string());
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.set_max_decoding_buffer_size(limits(probe).max_alloc.unwrap_or(u64::MAX) as usize);
    let clamp = |n: u32| n.clamp(1, u32::from(u16::MAX)) as u16;
    decoder.scale(clamp(need.0), clamp(need.1)).map_err(malformed)?;
    let pixels = decoder.decode().map_err(malformed)?;
    let info = decoder.info().ok_or_else(|| ThumbnailError::Malformed("no JPEG header".into()))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let image = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
        jpeg_decoder::PixelFormat::L8 => image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
        // Rare layouts: the general decoder handles their colour conversion.
        _ => return decode(bytes, probe),
    };
    image.ok_or_else(|| ThumbnailError::Malformed("the JPEG decoded to the wrong size".into()))
}

/// The output size of `method` for a `src` image and a target box, never larger than the source.
pub fn output_size(src: (u32, u32), target: (u32, u32), method: Method) -> (u32, u32) {
    let (sw, sh) = (u64::from(src.0), u64::from(src.1));
    let (tw, th) = (u64::from(target.0), u64::from(target.1));
    let (w, h) = match method {
        // Fit inside the box, keeping the aspect ratio.
        Method::Scale => {
            if tw * sh <= th * sw {
                (tw, (tw * sh / sw).max(1))
            } else {
                ((th * sw / sh).max(1), th)
            }
        }
        Method::Crop => (tw, th),
    };
    (w.min(sw) as u32, h.min(sh) as u32)
}

/// Scales or crops a decoded image to the target box.
pub fn resize(image: &DynamicImage, target: (u32, u32), method: Method) -> DynamicImage {
    let (sw, sh) = (image.width(), image.height());
    let (w, h) = output_size((sw, sh), target, method);
    match method {
        Method::Scale => image.thumbnail_exact(w, h),
        Method::Crop => {
            // The largest centred region of the source with the output's aspect ratio.
            let (sw64, sh64, w64, h64) = (u64::from(sw), u64::from(sh), u64::from(w), u64::from(h));
            let (cw, ch) = if sw64 * h64 > sh64 * w64 {
                ((sh64 * w64 / h64).max(1) as u32, sh)
            } else {
                (sw, (sw64 * h64 / w64).max(1) as u32)
            };
            image.crop_imm((sw - cw) / 2, (sh - ch) / 2, cw, ch).thumbnail_exact(w, h)
        }
    }
}

/// Encodes a still thumbnail: PNG when it has transparency, else JPEG.
pub fn encode(image: &DynamicImage) -> Result<Thumbnail, ThumbnailError> {
    let mut out = Cursor::new(Vec::new());
    let (result, content_type) = if image.color().has_alpha() {
        (image.write_to(&mut out, ImageFormat::Png), "image/png")
    } else {
        let rgb = DynamicImage::ImageRgb8(image.to_rgb8());
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
        (rgb.write_with_encoder(encoder), "image/jpeg")
    };
    result.map_err(|e| ThumbnailError::Malformed(e.to_string()))?;
    Ok(Thumbnail { bytes: out.into_inner(), content_type, width: image.width(), height: image.height() })
}

/// The most frames an animated thumbnail keeps.
const MAX_FRAMES: usize = 300;

/// An animated GIF thumbnail made of the frames of an animated GIF, WebP or APNG.
pub fn animated(bytes: &[u8], probe: &Probe, target: (u32, u32), method: Method) -> Result<Thumbnail, ThumbnailError> {
    let malformed = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => ThumbnailError::TooLarge,
        other => ThumbnailError::Malformed(other.to_string()),
    };
    let frames = match probe.format {
        ImageFormat::Gif => {
            let mut decoder = GifDecoder::new(Cursor::new(bytes)).map_err(malformed)?;
            decoder.set_limits(limits(probe)).map_err(malformed)?;
            decoder.into_frames()
        }
        ImageFormat::WebP => {
            let mut decoder = WebPDecoder::new(Cursor::new(bytes)).map_err(malformed)?;
            decoder.set_limits(limits(probe)).map_err(malformed)?;
            decoder.into_frames()
        }
        ImageFormat::Png => {
            let mut decoder = PngDecoder::new(Cursor::new(bytes)).map_err(malformed)?;
            decoder.set_limits(limits(probe)).map_err(malformed)?;
            decoder.apng().map_err(malformed)?.into_frames()
        }
        _ => return Err(ThumbnailError::NotAnImage),
    };
    let (width, height) = output_size((probe.width, probe.height), target, method);
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(&mut out, 10);
        encoder.set_repeat(Repeat::Infinite).map_err(malformed)?;
        for frame in frames.take(MAX_FRAMES) {
            let frame = frame.map_err(malformed)?;
            let delay = frame.delay();
            let image = DynamicImage::ImageRgba8(frame.into_buffer());
            let small = resize(&image, target, method).to_rgba8();
            encoder.encode_frame(Frame::from_parts(small, 0, 0, delay)).map_err(malformed)?;
        }
    }
    Ok(Thumbnail { bytes: out, content_type: "image/gif", width, height })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_the_smallest_that_covers_the_request() {
        assert_eq!(choose_size(32, 32, Method::Crop), Some((32, 32)));
        assert_eq!(choose_size(33, 20, Method::Crop), Some((96, 96)));
        assert_eq!(choose_size(97, 97, Method::Crop), None);
        assert_eq!(choose_size(1, 1, Method::Scale), Some((320, 240)));
        assert_eq!(choose_size(321, 100, Method::Scale), Some((640, 480)));
        assert_eq!(choose_size(800, 600, Method::Scale), Some((800, 600)));
        assert_eq!(choose_size(801, 600, Method::Scale), None);
    }

    #[test]
    fn output_sizes_keep_aspect_and_never_upscale() {
        assert_eq!(output_size((4000, 3000), (320, 240), Method::Scale), (320, 240));
        assert_eq!(output_size((4000, 1000), (320, 240), Method::Scale), (320, 80));
        assert_eq!(output_size((1000, 4000), (320, 240), Method::Scale), (60, 240));
        assert_eq!(output_size((4000, 3000), (96, 96), Method::Crop), (96, 96));
        assert_eq!(output_size((50, 1000), (96, 96), Method::Crop), (50, 96));
    }

    #[test]
    fn a_header_claiming_a_huge_image_is_refused_before_decoding() {
        // A valid PNG signature and IHDR chunk saying 100000 x 100000, and nothing else.
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0]);
        let crc = crc32(&png[12..]);
        png.extend_from_slice(&crc.to_be_bytes());
        // An empty IDAT and IEND: the decoder reads the header up to the first IDAT.
        for chunk in [b"IDAT", b"IEND"] {
            png.extend_from_slice(&[0, 0, 0, 0]);
            png.extend_from_slice(chunk);
            png.extend_from_slice(&crc32(chunk).to_be_bytes());
        }
        assert_eq!(probe(&png, 32_000_000).unwrap_err(), ThumbnailError::TooLarge);
        assert_eq!(probe(b"plain text", 32_000_000).unwrap_err(), ThumbnailError::NotAnImage);
    }

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
}
