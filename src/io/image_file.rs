//! RGB image files: PNG, JPEG, TIFF, 8 and 16 bit (and float TIFF), read with the `image`
//! crate and written as PNG.
//!
//! Decoded values are the stored numbers scaled to [0, 1] (value/255 or value/65535). The
//! studio treats them as linear camera RGB; when the caller says the file is sRGB-encoded,
//! [`crate::rgb::srgb_to_linear`] is applied. Grey images are replicated to three channels and
//! alpha is dropped.

use std::path::Path;

use image::{DynamicImage, ImageBuffer, Luma, Rgb};
use ndarray::{Array2, Array3, ArrayView2};

use crate::rgb::{linear_to_srgb, quantise, srgb_to_linear};
use crate::{Error, Result, RgbImage};

/// An image decoded to f32 in [0, 1]: `(channels, rows, cols)`, channels as stored (1 grey,
/// 2 grey+alpha, 3 RGB, 4 RGBA), and the bits per stored sample.
pub struct Decoded {
    pub data: Array3<f32>,
    pub bits: u32,
}

fn open_image(path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    let reader = reader.with_guessed_format().map_err(|e| Error::io(path, e))?;
    reader.decode().map_err(|e| Error::format(path, format!("cannot decode image: {e}")))
}

/// Decode any supported image to `(channels, rows, cols)` in [0, 1].
pub fn decode(path: &Path) -> Result<Decoded> {
    let img = open_image(path)?;
    let (cols, rows) = (img.width() as usize, img.height() as usize);
    let channels = img.color().channel_count() as usize;
    let (interleaved, bits): (Vec<f32>, u32) = if let Some(s) = img.as_flat_samples_u8() {
        (s.samples.iter().map(|&v| v as f32 / 255.0).collect(), 8)
    } else if let Some(s) = img.as_flat_samples_u16() {
        (s.samples.iter().map(|&v| v as f32 / 65535.0).collect(), 16)
    } else if let Some(s) = img.as_flat_samples_f32() {
        (s.samples.to_vec(), 32)
    } else {
        return Err(Error::format(path, format!("unsupported pixel type {:?}", img.color())));
    };
    let n = rows * cols;
    if channels == 0 || interleaved.len() < n * channels {
        return Err(Error::format(path, "decoded image holds fewer samples than its size"));
    }
    let mut planes = vec![0f32; n * channels];
    for (p, px) in interleaved.chunks_exact(channels).take(n).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            planes[ch * n + p] = v;
        }
    }
    let data = Array3::from_shape_vec((channels, rows, cols), planes)
        .map_err(|e| Error::format(path, e.to_string()))?;
    Ok(Decoded { data, bits })
}

/// Read an RGB image as linear RGB in [0, 1]; `srgb` says the file is sRGB-encoded.
pub fn read_rgb(path: &Path, srgb: bool) -> Result<RgbImage> {
    let Decoded { data, .. } = decode(path)?;
    let (channels, rows, cols) = data.dim();
    let mut rgb = Array3::zeros((3, rows, cols));
    for c in 0..3 {
        // grey (+alpha) is replicated; RGB(A) keeps its first three channels
        let src = if channels < 3 { 0 } else { c };
        rgb.index_axis_mut(ndarray::Axis(0), c).assign(&data.index_axis(ndarray::Axis(0), src));
    }
    if srgb {
        rgb.mapv_inplace(srgb_to_linear);
    }
    RgbImage::new(rgb).map_err(|e| Error::format(path, e.to_string()))
}

/// Read the first channel of an image in [0, 1] (a grey band image; the red channel of an
/// RGB file).
pub fn read_gray(path: &Path) -> Result<Array2<f32>> {
    let Decoded { data, .. } = decode(path)?;
    Ok(data.index_axis_move(ndarray::Axis(0), 0))
}

fn encode_err(e: image::ImageError) -> std::io::Error {
    std::io::Error::other(e)
}

/// Write an RGB image as PNG, 8 or 16 bit, atomically. Values are clamped to [0, 1];
/// `srgb_encode` applies the sRGB transfer function first (for viewing), otherwise the
/// linear values are stored.
pub fn write_png(rgb: &RgbImage, path: &Path, bits16: bool, srgb_encode: bool) -> Result<()> {
    let (rows, cols) = (rgb.rows(), rgb.cols());
    let value = |c: usize, r: usize, x: usize| {
        let v = rgb.data[[c, r, x]];
        if srgb_encode {
            linear_to_srgb(v)
        } else {
            v
        }
    };
    let (w, h) = dims_u32(path, rows, cols)?;
    super::atomic::write_atomically(path, |out| {
        let encoder = image::codecs::png::PngEncoder::new(out);
        if bits16 {
            let buf = ImageBuffer::<Rgb<u16>, _>::from_fn(w, h, |x, y| {
                Rgb(std::array::from_fn(|c| quantise(value(c, y as usize, x as usize), 65535.0) as u16))
            });
            buf.write_with_encoder(encoder).map_err(encode_err)
        } else {
            let buf = ImageBuffer::<Rgb<u8>, _>::from_fn(w, h, |x, y| {
                Rgb(std::array::from_fn(|c| quantise(value(c, y as usize, x as usize), 255.0) as u8))
            });
            buf.write_with_encoder(encoder).map_err(encode_err)
        }
    })
}

/// Write one band (values clamped to [0, 1]) as a grey PNG, 8 or 16 bit, atomically.
pub fn write_png_gray(band: ArrayView2<f32>, path: &Path, bits16: bool) -> Result<()> {
    let (rows, cols) = band.dim();
    let (w, h) = dims_u32(path, rows, cols)?;
    super::atomic::write_atomically(path, |out| {
        let encoder = image::codecs::png::PngEncoder::new(out);
        if bits16 {
            let buf = ImageBuffer::<Luma<u16>, _>::from_fn(w, h, |x, y| {
                Luma([quantise(band[[y as usize, x as usize]], 65535.0) as u16])
            });
            buf.write_with_encoder(encoder).map_err(encode_err)
        } else {
            let buf = ImageBuffer::<Luma<u8>, _>::from_fn(w, h, |x, y| {
                Luma([quantise(band[[y as usize, x as usize]], 255.0) as u8])
            });
            buf.write_with_encoder(encoder).map_err(encode_err)
        }
    })
}

fn dims_u32(path: &Path, rows: usize, cols: usize) -> Result<(u32, u32)> {
    match (u32::try_from(cols), u32::try_from(rows)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(Error::invalid(format!("{}: cannot write a {rows}x{cols} image", path.display()))),
    }
}

/// An RGB image file held decoded at its stored depth (8 bits: 1 byte a sample, a quarter of
/// f32) and converted to [0, 1] only for the tiles read, as a three-band
/// [`CubeSource`](crate::io::source::CubeSource): a 20000 × 20000 photo takes 1.2 GB, not 4.8.
/// Grey is replicated to three channels and alpha dropped, as [`read_rgb`] does.
pub struct ImageSource {
    image: DynamicImage,
    wavelengths: Vec<f32>,
    meta: crate::Metadata,
}

impl ImageSource {
    pub fn open(path: &Path) -> Result<ImageSource> {
        let image = open_image(path)?;
        if image.as_flat_samples_u8().is_none() && image.as_flat_samples_u16().is_none() && image.as_flat_samples_f32().is_none() {
            return Err(Error::format(path, format!("unsupported pixel type {:?}", image.color())));
        }
        let meta = crate::Metadata { source: Some(path.to_path_buf()), format: Some("image".into()), ..Default::default() };
        Ok(ImageSource { image, wavelengths: crate::cube::band_numbers(3), meta })
    }
}

impl crate::io::source::CubeSource for ImageSource {
    fn shape(&self) -> (usize, usize, usize) {
        (3, self.image.height() as usize, self.image.width() as usize)
    }
    fn wavelengths(&self) -> &[f32] {
        &self.wavelengths
    }
    fn fwhm(&self) -> Option<&[f32]> {
        None
    }
    fn meta(&self) -> &crate::Metadata {
        &self.meta
    }
    fn storage(&self) -> String {
        format!("decoded image ({:?})", self.image.color()).to_lowercase()
    }
    fn is_lazy(&self) -> bool {
        false
    }
    fn files(&self) -> Vec<std::path::PathBuf> {
        self.meta.source.iter().cloned().collect()
    }
    fn read(&self, bands: &[usize], rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, step: usize) -> Result<Array3<f32>> {
        crate::io::source::check_read(self.shape(), bands, &rows, &cols, step)?;
        let channels = self.image.color().channel_count() as usize;
        let width = self.image.width() as usize;
        let (nr, nc) = (rows.len().div_ceil(step), cols.len().div_ceil(step));
        let sample: Box<dyn Fn(usize) -> f32 + '_> = if let Some(s) = self.image.as_flat_samples_u8() {
            Box::new(move |i| s.samples[i] as f32 / 255.0)
        } else if let Some(s) = self.image.as_flat_samples_u16() {
            Box::new(move |i| s.samples[i] as f32 / 65535.0)
        } else {
            let s = self.image.as_flat_samples_f32().expect("checked on opening");
            Box::new(move |i| s.samples[i])
        };
        Ok(Array3::from_shape_fn((bands.len(), nr, nc), |(b, r, c)| {
            let channel = if channels < 3 { 0 } else { bands[b] };
            sample(((rows.start + r * step) * width + cols.start + c * step) * channels + channel)
        }))
    }
}

/// How an RGB file's numbers are to be read, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RgbEncoding {
    /// sRGB-encoded (linearised on reading), else linear camera RGB.
    pub srgb: bool,
    /// What in the file says so, for people.
    pub why: String,
}

/// Guess how an RGB file is encoded from the file itself: an 8-bit JPEG is sRGB by
/// convention (that is what phones and cameras write), a PNG with an `sRGB` or `iCCP` chunk,
/// or a `gAMA` near 1/2.2, declares sRGB; a PNG with `gAMA` 1.0, and anything without colour
/// information (16-bit PNGs `render` writes, TIFF, `.npy`), is read as linear camera RGB, the
/// studio's convention.
pub fn guess_encoding(path: &Path) -> Result<RgbEncoding> {
    let linear = |why: &str| Ok(RgbEncoding { srgb: false, why: why.to_string() });
    let srgb = |why: &str| Ok(RgbEncoding { srgb: true, why: why.to_string() });
    match crate::io::extension(path).as_str() {
        "jpg" | "jpeg" => return srgb("an 8-bit JPEG (sRGB by convention)"),
        "png" => {}
        "npy" => return linear("a .npy array"),
        _ => return linear("no colour information in the file"),
    }
    let bytes = {
        use std::io::Read;
        let mut head = Vec::new();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // The colour chunks come before the image data; 1 MiB is plenty for any ICC profile.
        file.take(1 << 20).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
        head
    };
    if bytes.len() < 8 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" {
        return Err(Error::format(path, "not a PNG file (bad signature)"));
    }
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = bytes.get(at + 8..at + 8 + len);
        match kind {
            b"sRGB" => return srgb("the PNG declares sRGB (sRGB chunk)"),
            b"iCCP" => return srgb("the PNG carries an ICC colour profile (iCCP chunk)"),
            b"gAMA" => {
                if let Some(d) = data.filter(|d| d.len() == 4) {
                    let gamma = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as f64 / 100_000.0;
                    if (gamma - 1.0 / 2.2).abs() < 0.02 {
                        return srgb("the PNG declares gamma 1/2.2 (gAMA chunk)");
                    }
                    if (gamma - 1.0).abs() < 0.02 {
                        return linear("the PNG declares gamma 1.0 (gAMA chunk)");
                    }
                }
            }
            b"IDAT" | b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    linear("a PNG without colour information")
}

#[cfg(test)]
mod encoding_tests {
    use super::*;

    /// A PNG signature, an IHDR and the given chunks (CRCs are not checked by the guess).
    fn png_with(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8; 4], data: &[u8]| {
            out.extend((data.len() as u32).to_be_bytes());
            out.extend(kind);
            out.extend(data);
            out.extend([0u8; 4]);
        };
        chunk(b"IHDR", &[0u8; 13]);
        for (kind, data) in chunks {
            chunk(kind, data);
        }
        chunk(b"IDAT", &[]);
        out
    }

    #[test]
    fn the_encoding_is_guessed_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        type Case<'a> = (&'a str, Vec<(&'a [u8; 4], Vec<u8>)>, bool);
        let cases: [Case; 5] = [
            ("srgb.png", vec![(b"sRGB", vec![0])], true),
            ("icc.png", vec![(b"iCCP", b"x\0\0".to_vec())], true),
            ("gamma22.png", vec![(b"gAMA", 45455u32.to_be_bytes().to_vec())], true),
            ("gamma1.png", vec![(b"gAMA", 100000u32.to_be_bytes().to_vec())], false),
            ("plain.png", vec![(b"tEXt", b"hello".to_vec())], false),
        ];
        for (name, chunks, srgb) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, png_with(&chunks)).unwrap();
            assert_eq!(guess_encoding(&p).unwrap().srgb, srgb, "{name}");
        }
        let jpg = dir.path().join("photo.jpg");
        std::fs::write(&jpg, b"not even read").unwrap();
        assert!(guess_encoding(&jpg).unwrap().srgb);
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"GIF89a").unwrap();
        assert!(guess_encoding(&bad).unwrap_err().to_string().contains("bad.png"));
    }
}
