use super::{Keys, push_string, take_string};

#[test]
fn numbers_keys_in_order_of_first_appearance() {
    let mut keys = Keys::with_capacity(1, 1);
    assert_eq!(keys.number("a\0b"), (0, true));
    assert_eq!(keys.number("a"), (1, true));
    assert_eq!(keys.number(""), (2, true));
    assert_eq!(keys.number("a\0b"), (0, false));
    assert_eq!(keys.number("a"), (1, false));
    assert_eq!(keys.number(""), (2, false));
    // Past the first capacity, after the table and the text have grown.
    for n in 0..1000 {
        assert_eq!(keys.number(&format!("k{n}")), (3 + n, true));
    }
    for n in 0..1000 {
        assert_eq!(keys.number(&format!("k{n}")), (3 + n, false));
    }
    assert_eq!(keys.number("a\0b"), (0, false));
    // Each key is given back by its number.
    assert_eq!((keys.get(0), keys.get(1), keys.get(2)), ("a\0b", "a", ""));
    assert_eq!(keys.get(3 + 999), "k999");
    assert_eq!(
        keys.bytes(),
        4 + (0..1000).map(|n| format!("k{n}").len()).sum::<usize>()
    );
}

#[test]
fn a_key_that_is_a_prefix_of_another_is_its_own() {
    let mut keys = Keys::default();
    assert_eq!(keys.number("ab"), (0, true));
    assert_eq!(keys.number("a"), (1, true));
    assert_eq!(keys.number("b"), (2, true));
    assert_eq!(keys.number("ab"), (0, false));
}

#[test]
fn strings_after_their_lengths_keep_sequences_apart() {
    let key = |parts: &[&str]| {
        let mut k = String::new();
        for p in parts {
            push_string(&mut k, p);
        }
        k
    };
    assert_eq!(key(&["ab", ""]), "2:ab0:");
    assert_ne!(key(&["a", "x\0b\0y"]), key(&["a", "x", "b", "y"]));
    assert_ne!(key(&["1:a"]), key(&["", "a"]));
}

#[test]
fn strings_are_read_back_as_written() {
    let strings = ["", "a", "x:y", "12:ab", "ünï\u{0}cödé", &"long".repeat(40)];
    let mut key = String::new();
    for s in strings {
        push_string(&mut key, s);
    }
    let mut rest = key.as_str();
    for s in strings {
        assert_eq!(take_string(&mut rest), Some(s));
    }
    assert_eq!(rest, "");
    assert_eq!(take_string(&mut rest), None);
    for bad in ["a:", "3:ab", "x", "-1:a", "1:\u{e9}"] {
        let mut rest = bad;
        assert_eq!(take_string(&mut rest), None, "{bad:?}");
    }
}
