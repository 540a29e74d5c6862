//! Checks of the vendored str0m's changes that callgate's forwarding relies on
//! (vendor/str0m/CALLGATE-PATCH.md). The send path itself is covered by `core_sim.rs`
//! (frames reach every player; a lost packet is repaired from the player's RTX cache).

use str0m::media::{Mid, Rid};

/// What str0m 0.25.0 returned for an id's text, kept here as the reference.
fn reference(a: &[u8]) -> &str {
    std::str::from_utf8(a).expect("ascii id").trim()
}

fn ids() -> Vec<[u8; 16]> {
    let mut v: Vec<[u8; 16]> = vec![[b' '; 16], [b'a'; 16], *b"0               ", *b"               9"];
    let mut pad = |s: &[u8], at: usize| {
        let mut a = [b' '; 16];
        a[at..at + s.len()].copy_from_slice(s);
        v.push(a);
    };
    pad(b"video", 0);
    pad(b"a b", 3);
    pad(b"\tx\t", 2); // ASCII whitespace next to the padding
    pad(b"\x0bx\x0b", 1); // vertical tab: whitespace to `str::trim`, not to `u8::is_ascii_whitespace`
    pad(b"\x0c\r\n", 0);
    pad("\u{a0}m\u{a0}".as_bytes(), 4); // non-ASCII whitespace (no-break space)
    pad("\u{3000}".as_bytes(), 13); // ideographic space at the end
    pad("é".as_bytes(), 0);
    pad(b"x", 15);
    v
}

#[test]
fn an_ids_text_is_what_trimming_the_whole_array_gives() {
    for a in ids() {
        let mid = Mid::from_array(a);
        assert_eq!(&*mid, reference(&a), "mid {a:?}");
        // A rid is 8 bytes: the same cases from each end of the array.
        for r in [&a[..8], &a[8..]] {
            let r: [u8; 8] = r.try_into().unwrap();
            if std::str::from_utf8(&r).is_ok() {
                assert_eq!(&*Rid::from_array(r), reference(&r), "rid {r:?}");
            }
        }
    }
}

#[test]
fn ids_made_from_text_keep_their_text() {
    for s in ["0", "1", "video", "audio0", "a_b", "abcdefghijklmnop"] {
        assert_eq!(&*Mid::from(s), s);
    }
}
