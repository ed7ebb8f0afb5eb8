//! Screenshots as PNG files with their provenance in text chunks: what was
//! shown (mode, windows, overlays) travels with the picture. Written atomically.

use std::path::Path;

/// Encode RGBA8 pixels (rows top to bottom) as PNG with UTF-8 text chunks
/// (keyword, text); keywords are 1–79 Latin-1 characters.
pub fn encode(
    width: u32,
    height: u32,
    rgba: &[u8],
    texts: &[(&str, String)],
) -> Result<Vec<u8>, String> {
    if rgba.len() != (width as usize) * (height as usize) * 4 || width == 0 || height == 0 {
        return Err(format!(
            "{} bytes are not a {width}×{height} RGBA image",
            rgba.len()
        ));
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_source_srgb(png::SrgbRenderingIntent::Perceptual);
        for (k, t) in texts {
            enc.add_itxt_chunk((*k).to_string(), t.clone())
                .map_err(|e| format!("PNG text chunk '{k}': {e}"))?;
        }
        let mut w = enc.write_header().map_err(|e| format!("PNG: {e}"))?;
        w.write_image_data(rgba).map_err(|e| format!("PNG: {e}"))?;
        w.finish().map_err(|e| format!("PNG: {e}"))?;
    }
    Ok(out)
}

/// Write a PNG atomically (temp file, then rename).
pub fn write(
    path: &Path,
    width: u32,
    height: u32,
    rgba: &[u8],
    texts: &[(&str, String)],
) -> Result<(), String> {
    let bytes = encode(width, height, rgba, texts)?;
    crate::atomic::write_atomic(path, |w| std::io::Write::write_all(w, &bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The text chunks of a PNG file (keyword, text), for checking what a screenshot recorded.
pub fn read_texts(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info().map_err(|e| format!("PNG: {e}"))?;
    let info = reader.info();
    let mut out = Vec::new();
    for c in &info.utf8_text {
        out.push((c.keyword.clone(), c.get_text().map_err(|e| e.to_string())?));
    }
    for c in &info.uncompressed_latin1_text {
        out.push((c.keyword.clone(), c.text.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_chunks_round_trip_and_bad_sizes_are_refused() {
        let rgba: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let bytes = encode(
            2,
            3,
            &rgba,
            &[("warpscope", "{\"mode\":\"green–magenta\"}".into())],
        )
        .expect("encode");
        let texts = read_texts(&bytes).expect("decode");
        assert_eq!(
            texts,
            vec![(
                "warpscope".to_string(),
                "{\"mode\":\"green–magenta\"}".to_string()
            )]
        );
        let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes))
            .read_info()
            .expect("info");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        reader.next_frame(&mut buf).expect("frame");
        assert_eq!(buf, rgba);
        assert!(encode(2, 2, &rgba, &[]).is_err());
    }
}
