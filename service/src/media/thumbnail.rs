//! Thumbnails (spec: "Thumbnails"): which size to make for a request, and
//! making it with the `image` crate. CPU-bound and synchronous: the
//! service runs [`render`] off the async runtime.
//!
//! A request's size is rounded up to one of [`EDGES`] on each side, so a
//! picture has a bounded number of thumbnails however many sizes clients
//! ask for; the spec's five recommended sizes are among them. Thumbnails
//! are never larger than the original (no upscaling): when the original
//! is no larger than what was asked, the original is served instead.

use std::io::Cursor;

use image::{
    AnimationDecoder, DynamicImage, Frame, ImageDecoder, ImageFormat, ImageReader, Limits, RgbaImage,
    codecs::gif::{GifDecoder, GifEncoder, Repeat},
    imageops::FilterType,
};

/// The edge lengths thumbnails are made at.
pub const EDGES: [u32; 12] = [32, 64, 96, 128, 240, 320, 480, 600, 640, 800, 1024, 1600];

/// The spec's thumbnail methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Exactly the requested aspect ratio, cut from the middle.
    Crop,
    /// The original's aspect ratio, within the requested box.
    Scale,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Crop => "crop",
            Method::Scale => "scale",
        }
    }
}

/// What to make: a box (already rounded up to [`EDGES`]) and a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub width: u32,
    pub height: u32,
    pub method: Method,
    pub animated: bool,
}

/// The box a request is served from: each side rounded up to an edge
/// length, or `None` when a side is larger than every edge (the original
/// is served then: no thumbnail could be as large as asked).
pub fn target_for(width: u32, height: u32, method: Method, animated: bool) -> Option<Target> {
    let round_up = |side: u32| EDGES.iter().copied().find(|&edge| edge >= side.max(1));
    Some(Target { width: round_up(width)?, height: round_up(height)?, method, animated })
}

/// A finished thumbnail.
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Why no thumbnail was made.
#[derive(Debug, PartialEq, Eq)]
pub enum RenderError {
    /// Not a picture this server can read (400 `M_UNKNOWN`).
    Unsupported,
    /// More pixels than `max_pixels` (413 `M_TOO_LARGE`, 502 if remote).
    TooLarge,
    /// The original is no larger than the box: serve it as it is.
    UseOriginal,
}

/// Frames an animated thumbnail keeps at most; longer animations get a
/// still thumbnail.
const MAX_FRAMES: usize = 500;

/// What the first bytes of a file say: `Unsupported` when they are not a
/// picture this server thumbnails, `TooLarge` when its header already
/// gives more than `max_pixels` (so the rest need not be read).
pub fn probe(prefix: &[u8], max_pixels: u64) -> Result<(), RenderError> {
    let reader =
        ImageReader::new(Cursor::new(prefix)).with_guessed_format().map_err(|_| RenderError::Unsupported)?;
    let format = reader.format().ok_or(RenderError::Unsupported)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP) {
        return Err(RenderError::Unsupported);
    }
    // The size may lie past the prefix (a JPEG's metadata first): then
    // `render` checks it on the whole file.
    match reader.into_dimensions() {
        Ok((width, height)) if u64::from(width) * u64::from(height) > max_pixels => {
            Err(RenderError::TooLarge)
        }
        _ => Ok(()),
    }
}

/// Makes the thumbnail of `source` (the original's bytes) for `target`,
/// refusing pictures of more than `max_pixels` before decoding them.
pub fn render(source: &[u8], target: Target, max_pixels: u64) -> Result<Rendered, RenderError> {
    let reader =
        ImageReader::new(Cursor::new(source)).with_guessed_format().map_err(|_| RenderError::Unsupported)?;
    let format = reader.format().ok_or(RenderError::Unsupported)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP) {
        return Err(RenderError::Unsupported);
    }
    let (width, height) = reader.into_dimensions().map_err(|_| RenderError::Unsupported)?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(RenderError::TooLarge);
    }
    let (out_width, out_height, crop) = geometry(width, height, target.width, target.height, target.method)
        .ok_or(RenderError::UseOriginal)?;

    if target.animated
        && format == ImageFormat::Gif
        && let Some(rendered) =
            render_animation(source, (width, height), max_pixels, (out_width, out_height), crop)
    {
        return Ok(rendered);
    }
    let mut reader = ImageReader::with_format(std::io::BufReader::new(Cursor::new(source)), format);
    reader.limits(limits(max_pixels));
    let image = reader.decode().map_err(|_| RenderError::Unsupported)?;
    let image = resize(&image, (out_width, out_height), crop);
    let (content_type, output) = match format {
        // Photographs stay JPEG; everything else (transparency) is PNG.
        ImageFormat::Jpeg => ("image/jpeg", ImageFormat::Jpeg),
        _ => ("image/png", ImageFormat::Png),
    };
    let image = match output {
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(image.to_rgb8()),
        _ => image,
    };
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), output).map_err(|_| RenderError::Unsupported)?;
    Ok(Rendered { bytes, content_type, width: image.width(), height: image.height() })
}

/// The thumbnail's size and, for crops, the part of the original to keep
/// (`x, y, width, height`); `None` when the original is no larger than
/// the box (nothing to make: no upscaling).
pub fn geometry(
    width: u32,
    height: u32,
    box_width: u32,
    box_height: u32,
    method: Method,
) -> Option<(u32, u32, Option<Cut>)> {
    if width == 0 || height == 0 || (width <= box_width && height <= box_height) {
        return None;
    }
    let (w, h, bw, bh) = (u64::from(width), u64::from(height), u64::from(box_width), u64::from(box_height));
    match method {
        Method::Scale => {
            // Fit inside the box, keeping the aspect ratio.
            let (out_w, out_h) =
                if bw * h <= bh * w { (bw, (bw * h / w).max(1)) } else { ((bh * w / h).max(1), bh) };
            Some((narrow(out_w), narrow(out_h), None))
        }
        Method::Crop => {
            // Cut the box's aspect ratio from the middle, then shrink to
            // the box (or keep the cut's size where it is smaller).
            let (cut_w, cut_h) =
                if bw * h <= bh * w { ((bw * h / bh).max(1), h) } else { (w, (bh * w / bw).max(1)) };
            let x = (w - cut_w) / 2;
            let y = (h - cut_h) / 2;
            let (out_w, out_h) = if cut_w > bw { (bw, bh) } else { (cut_w, cut_h) };
            Some((narrow(out_w), narrow(out_h), Some((narrow(x), narrow(y), narrow(cut_w), narrow(cut_h)))))
        }
    }
}

/// The part of a picture a crop keeps: `x, y, width, height`.
pub type Cut = (u32, u32, u32, u32);

/// Values computed from `u32` inputs that cannot exceed them.
fn narrow(value: u64) -> u32 {
    u32::try_from(value).expect("thumbnail geometry stays within the original's u32 sides")
}

fn resize(image: &DynamicImage, (width, height): (u32, u32), crop: Option<Cut>) -> DynamicImage {
    match crop {
        Some((x, y, w, h)) => {
            let cut = image.crop_imm(x, y, w, h);
            match (cut.width(), cut.height()) == (width, height) {
                true => cut,
                false => cut.resize_exact(width, height, FilterType::Triangle),
            }
        }
        None => image.resize_exact(width, height, FilterType::Triangle),
    }
}

fn limits(max_pixels: u64) -> Limits {
    let mut limits = Limits::default();
    // RGBA at 8 bits, twice over for the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
    limits
}

/// An animated GIF's frames resized into a GIF; `None` when it is not
/// animated, too long, or unreadable (a still thumbnail is made instead).
/// Frames are resized as they are decoded, one full frame in memory at a
/// time, and all of them together may not exceed four times
/// `max_pixels` (a tiny file can declare a huge canvas and many frames).
fn render_animation(
    source: &[u8],
    (width, height): (u32, u32),
    max_pixels: u64,
    size: (u32, u32),
    crop: Option<Cut>,
) -> Option<Rendered> {
    let canvas = (u64::from(width) * u64::from(height)).max(1);
    let max_frames =
        usize::try_from(max_pixels.saturating_mul(4) / canvas).unwrap_or(usize::MAX).min(MAX_FRAMES);
    let mut decoder = GifDecoder::new(std::io::BufReader::new(Cursor::new(source))).ok()?;
    decoder.set_limits(limits(max_pixels)).ok()?;
    let mut resized = Vec::new();
    for frame in decoder.into_frames().take(max_frames + 1) {
        let frame = frame.ok()?;
        let delay = frame.delay();
        let image = resize(&DynamicImage::ImageRgba8(frame.into_buffer()), size, crop);
        resized.push(Frame::from_parts(RgbaImage::from(image), 0, 0, delay));
    }
    if resized.len() < 2 || resized.len() > max_frames {
        return None;
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(&mut bytes, 10);
        encoder.set_repeat(Repeat::Infinite).ok()?;
        encoder.encode_frames(resized).ok()?;
    }
    Some(Rendered { bytes, content_type: "image/gif", width: size.0, height: size.1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_up_to_the_edge_lengths() {
        let target = target_for(50, 33, Method::Crop, false).expect("within the edges");
        assert_eq!((target.width, target.height), (64, 64));
        let target = target_for(320, 240, Method::Scale, false).expect("a recommended size");
        assert_eq!((target.width, target.height), (320, 240));
        assert_eq!(target_for(0, 0, Method::Scale, false).map(|t| (t.width, t.height)), Some((32, 32)));
        assert_eq!(target_for(2000, 10, Method::Scale, false), None, "larger than any thumbnail");
    }

    #[test]
    fn scale_keeps_the_aspect_ratio_inside_the_box() {
        assert_eq!(geometry(1000, 500, 320, 240, Method::Scale), Some((320, 160, None)));
        assert_eq!(geometry(500, 1000, 320, 240, Method::Scale), Some((120, 240, None)));
    }

    #[test]
    fn crop_cuts_the_box_ratio_from_the_middle() {
        assert_eq!(geometry(1000, 500, 96, 96, Method::Crop), Some((96, 96, Some((250, 0, 500, 500)))));
        // Cut smaller than the box on one side: kept at its own size.
        assert_eq!(geometry(100, 40, 96, 96, Method::Crop), Some((40, 40, Some((30, 0, 40, 40)))));
    }

    #[test]
    fn nothing_is_upscaled() {
        assert_eq!(geometry(32, 32, 96, 96, Method::Crop), None);
        assert_eq!(geometry(320, 240, 320, 240, Method::Scale), None);
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image =
            DynamicImage::ImageRgba8(RgbaImage::from_pixel(width, height, image::Rgba([200, 10, 10, 255])));
        let mut bytes = Vec::new();
        image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).expect("encode");
        bytes
    }

    #[test]
    fn a_png_is_thumbnailed_to_a_png_of_the_box() {
        let target = target_for(96, 96, Method::Crop, false).expect("edge");
        let rendered = render(&png(300, 200), target, 1 << 24).expect("thumbnail");
        assert_eq!(rendered.content_type, "image/png");
        let decoded = image::load_from_memory(&rendered.bytes).expect("a picture");
        assert_eq!((decoded.width(), decoded.height()), (96, 96));
    }

    #[test]
    fn a_webp_is_thumbnailed_to_a_png() {
        let image = DynamicImage::ImageRgba8(RgbaImage::from_pixel(500, 250, image::Rgba([1, 2, 3, 255])));
        let mut webp = Vec::new();
        image.write_to(&mut Cursor::new(&mut webp), ImageFormat::WebP).expect("encode WebP");
        let target = target_for(96, 96, Method::Scale, false).expect("edge");
        let rendered = render(&webp, target, 1 << 24).expect("thumbnail");
        assert_eq!(rendered.content_type, "image/png");
        let decoded = image::load_from_memory(&rendered.bytes).expect("a picture");
        assert_eq!((decoded.width(), decoded.height()), (96, 48));
    }

    #[test]
    fn too_many_pixels_or_not_a_picture_are_refused() {
        let target = target_for(32, 32, Method::Scale, false).expect("edge");
        assert!(matches!(render(&png(300, 200), target, 1000), Err(RenderError::TooLarge)));
        assert!(matches!(render(b"plain text", target, 1 << 24), Err(RenderError::Unsupported)));
        assert!(matches!(render(&png(20, 20), target, 1 << 24), Err(RenderError::UseOriginal)));
    }

    #[test]
    fn a_huge_canvas_with_many_frames_gets_a_still_thumbnail() {
        // Frames of a canvas this large, more than the budget allows.
        let frames =
            (0..6).map(|i| Frame::new(RgbaImage::from_pixel(1000, 1000, image::Rgba([i * 40, 0, 0, 255]))));
        let mut gif = Vec::new();
        GifEncoder::new(&mut gif).encode_frames(frames).expect("encode");
        let animated = target_for(64, 64, Method::Scale, true).expect("edge");
        // Budget: 4 × 1,000,000 pixels = 4 frames of this canvas.
        let rendered = render(&gif, animated, 1_000_000).expect("a thumbnail");
        assert_eq!(rendered.content_type, "image/png", "too many frames: a still");
        assert_eq!(probe(&gif[..64], 999_999), Err(RenderError::TooLarge));
        assert_eq!(probe(b"%PDF-1.4", 1_000_000), Err(RenderError::Unsupported));
        assert_eq!(probe(&gif[..64], 1_000_000), Ok(()));
    }

    #[test]
    fn an_animated_gif_stays_animated_when_asked() {
        let frames =
            (0..3).map(|i| Frame::new(RgbaImage::from_pixel(200, 200, image::Rgba([i * 80, 0, 0, 255]))));
        let mut gif = Vec::new();
        {
            let mut encoder = GifEncoder::new(&mut gif);
            encoder.encode_frames(frames).expect("encode");
        }
        let animated = target_for(64, 64, Method::Scale, true).expect("edge");
        let rendered = render(&gif, animated, 1 << 24).expect("thumbnail");
        assert_eq!(rendered.content_type, "image/gif");
        let decoder = GifDecoder::new(Cursor::new(&rendered.bytes)).expect("a GIF");
        assert_eq!(decoder.into_frames().count(), 3);

        let still = target_for(64, 64, Method::Scale, false).expect("edge");
        assert_eq!(render(&gif, still, 1 << 24).expect("thumbnail").content_type, "image/png");
    }
}
