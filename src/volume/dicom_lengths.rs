//! A walk over a DICOM Part 10 object's element headers, before dicom-rs
//! parses it: every defined value length must fit in the bytes that are
//! left. dicom-parser reserves an element's declared length before reading
//! it, so a 10 KB file that claims a 3 GB element would allocate 3 GB (the
//! fuzz target found this); such a file is refused here instead.
//!
//! The walk follows the transfer syntax of the file meta group (implicit VR
//! little endian, explicit VR little or big endian). Sequences are walked
//! into (their items hold elements that could lie too); encapsulated pixel
//! data fragments are skipped. A deflated data set cannot be walked without
//! inflating it and is left to the parser.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Where the file meta group starts: after "DICM" at 128 (with the
/// preamble) or at 0 (without); `None`: not a Part 10 object.
pub fn meta_start(bytes: &[u8]) -> Option<usize> {
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        Some(132)
    } else if bytes.starts_with(b"DICM") {
        Some(4)
    } else {
        None
    }
}

#[derive(Clone, Copy)]
struct Syntax {
    explicit: bool,
    big_endian: bool,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.b.len() - self.pos
    }
    fn u16(&self, at: usize, be: bool) -> u16 {
        let a = [self.b[at], self.b[at + 1]];
        if be {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }
    fn u32(&self, at: usize, be: bool) -> u32 {
        let a = [self.b[at], self.b[at + 1], self.b[at + 2], self.b[at + 3]];
        if be {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
}

/// VRs with a 2-byte length in explicit VR; every other one, unknown VRs
/// included, has 2 reserved bytes and a 4-byte length (as dicom-encoding
/// reads them).
fn long_length(vr: &[u8]) -> bool {
    !matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

fn is_sequence(tag: Tag, explicit_vr: Option<&[u8]>) -> bool {
    match explicit_vr {
        Some(vr) => vr == b"SQ",
        None => matches!(
            StandardDataDictionary.by_tag(tag).map(|e| e.vr()),
            Some(VirtualVr::Exact(VR::SQ))
        ),
    }
}

/// Check every element length of a Part 10 object (`bytes`, the whole
/// file). `Err` says which element claims more than is there.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let start = meta_start(bytes).ok_or("no DICM marker: not a DICOM Part 10 file")?;
    let mut r = Reader {
        b: bytes,
        pos: start,
    };
    // The meta group: explicit VR little endian, group 0002.
    let meta = Syntax {
        explicit: true,
        big_endian: false,
    };
    // As dicom-object reads it: (0002,0000) first, then elements until
    // its group length is used up, whatever their group.
    let mut transfer_syntax = String::new();
    if r.left() < 12 || r.u16(r.pos, false) != 0x0002 || r.u16(r.pos + 2, false) != 0x0000 {
        return Err("the file meta group does not start with its group length".into());
    }
    let group_length = r.u32(r.pos + 8, false) as usize;
    r.pos += 12;
    let mut read = 0;
    while read < group_length {
        if r.left() < 8 {
            return Err("the file meta group is cut short".into());
        }
        let tag = Tag(r.u16(r.pos, false), r.u16(r.pos + 2, false));
        let (len, header) = header_length(&r, meta)?;
        if len == UNDEFINED {
            return Err("an undefined length in the file meta group".into());
        }
        let value_at = r.pos + header;
        check_fits(&r, value_at, len, tag)?;
        if tag == Tag(0x0002, 0x0010) {
            transfer_syntax = String::from_utf8_lossy(&bytes[value_at..value_at + len as usize])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        r.pos = value_at + len as usize;
        read += header + len as usize;
    }
    let syntax = match transfer_syntax.as_str() {
        "1.2.840.10008.1.2" => Syntax {
            explicit: false,
            big_endian: false,
        },
        "1.2.840.10008.1.2.2" => Syntax {
            explicit: true,
            big_endian: true,
        },
        "1.2.840.10008.1.2.1.99" => return Ok(()), // deflated: left to the parser
        _ => Syntax {
            explicit: true,
            big_endian: false,
        },
    };
    walk(&mut r, syntax)
}

/// (value length, header size) of the element at `r.pos`.
fn header_length(r: &Reader, s: Syntax) -> Result<(u32, usize), String> {
    if s.explicit {
        if r.left() < 8 {
            return Err("an element header is cut short".into());
        }
        let vr = &r.b[r.pos + 4..r.pos + 6];
        if long_length(vr) {
            if r.left() < 12 {
                return Err("an element header is cut short".into());
            }
            Ok((r.u32(r.pos + 8, s.big_endian), 12))
        } else {
            Ok((u32::from(r.u16(r.pos + 6, s.big_endian)), 8))
        }
    } else {
        Ok((r.u32(r.pos + 4, s.big_endian), 8))
    }
}

fn check_fits(r: &Reader, value_at: usize, len: u32, tag: Tag) -> Result<(), String> {
    if len != UNDEFINED && (len as usize) > r.b.len().saturating_sub(value_at) {
        return Err(format!(
            "element ({:04X},{:04X}) claims {len} bytes but only {} follow: the file is truncated or damaged",
            tag.0,
            tag.1,
            r.b.len().saturating_sub(value_at)
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Context {
    Sequence,
    Fragments,
}

fn walk(r: &mut Reader, s: Syntax) -> Result<(), String> {
    let mut stack: Vec<Context> = Vec::new();
    while r.left() >= 8 {
        let tag = Tag(r.u16(r.pos, s.big_endian), r.u16(r.pos + 2, s.big_endian));
        if tag.0 == 0xFFFE {
            // Items and delimiters: a 4-byte length, no VR.
            let len = r.u32(r.pos + 4, s.big_endian);
            r.pos += 8;
            match tag.1 {
                0xE000 => {
                    check_fits(r, r.pos, len, tag)?;
                    if stack.last() == Some(&Context::Fragments) && len != UNDEFINED {
                        r.pos += len as usize;
                    }
                }
                0xE0DD => {
                    stack.pop();
                }
                _ => {}
            }
            continue;
        }
        let (len, header) = header_length(r, s)?;
        let vr = s.explicit.then(|| &r.b[r.pos + 4..r.pos + 6]);
        let sequence = is_sequence(tag, vr);
        r.pos += header;
        if len == UNDEFINED {
            // Undefined length: encapsulated fragments for pixel data, a
            // sequence for anything else (as the parser takes it).
            let pixels = matches!(tag, Tag(0x7FE0, 0x0008..=0x0010));
            stack.push(if pixels && !sequence {
                Context::Fragments
            } else {
                Context::Sequence
            });
            continue;
        }
        check_fits(r, r.pos, len, tag)?;
        if !sequence {
            r.pos += len as usize;
        }
        // A defined-length sequence: its items follow, walked in turn.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Preamble, DICM, a meta group naming explicit VR little endian, then
    /// `body`.
    fn object(body: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        let ts = b"1.2.840.10008.1.2.1\0";
        b.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        b.extend_from_slice(&(8 + ts.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        b.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        b.extend_from_slice(ts);
        b.extend_from_slice(body);
        b
    }

    fn ob(tag: (u16, u16), len: u32, data: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&tag.0.to_le_bytes());
        e.extend_from_slice(&tag.1.to_le_bytes());
        e.extend_from_slice(b"OB\0\0");
        e.extend_from_slice(&len.to_le_bytes());
        e.extend_from_slice(data);
        e
    }

    #[test]
    fn lengths_beyond_the_file_are_found_at_any_depth() {
        let fine = object(&ob((0x0009, 0x0010), 4, &[1, 2, 3, 4]));
        assert_eq!(check(&fine), Ok(()));
        let liar = object(&ob((0x0009, 0x0010), 3_000_000_000, &[1, 2, 3, 4]));
        let e = check(&liar).expect_err("refused");
        assert!(e.contains("(0009,0010)") && e.contains("3000000000"), "{e}");
        // Inside a sequence of undefined length, inside an item.
        let mut seq = Vec::new();
        seq.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
        seq.extend_from_slice(&UNDEFINED.to_le_bytes());
        seq.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        seq.extend_from_slice(&UNDEFINED.to_le_bytes());
        seq.extend(ob((0x0009, 0x0011), 2_000_000, &[0; 8]));
        let e = check(&object(&seq)).expect_err("nested");
        assert!(e.contains("(0009,0011)"), "{e}");
        assert!(check(b"not dicom").is_err());
        // Cut anywhere: an error, never a panic.
        let whole = object(&ob((0x0009, 0x0010), 4, &[1, 2, 3, 4]));
        for cut in 0..whole.len() {
            let _ = check(&whole[..cut]);
        }
    }
}
