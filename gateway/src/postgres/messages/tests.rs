//! The framing: headers, the cursor, the encoder and `read_message` on whole, split,
//! over-long and cut-off input.

use bytes::{Bytes, BytesMut};

use super::*;

fn sample() -> Bytes {
    encoded(|out| frame(out, b'Q', |b| put_cstr(b, "SELECT 1")))
}

#[test]
fn frame_patches_the_length_in() {
    assert_eq!(&sample()[..], b"Q\0\0\0\x0dSELECT 1\0");
    let bare = encoded(|out| frame_untagged(out, |b| b.put_u32(80_877_103)));
    assert_eq!(&bare[..], [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]);
}

#[test]
fn headers_below_four_are_malformed() {
    assert!(matches!(Header::parse([b'Q', 0, 0, 0, 3]), Err(WireError::Malformed(_))));
    assert_eq!(Header::parse([b'S', 0, 0, 0, 4]).unwrap().body_len(), 0);
}

#[test]
fn the_cursor_never_reads_past_the_end() {
    let mut r = Reader::new(b"ab\0\x01\x02\xff\xff\xff\xfe");
    assert_eq!(r.cstr().unwrap(), "ab");
    assert_eq!(r.i16().unwrap(), 0x0102);
    assert_eq!(r.i32().unwrap(), -2);
    assert!(r.is_empty());
    assert!(matches!(r.u8(), Err(WireError::Truncated)));
    assert!(matches!(r.cstr(), Err(WireError::Truncated)));
    assert!(matches!(Reader::new(b"\xc3\0").cstr(), Err(WireError::Malformed(_))));
    let mut r = Reader::new(b"abc");
    assert!(matches!(r.bytes(4), Err(WireError::Truncated)));
    assert_eq!(r.bytes(2).unwrap(), b"ab");
    assert!(matches!(r.finish(), Err(WireError::Malformed(_))));
}

#[test]
fn from_raw_checks_the_length() {
    let m = Message::from_raw(sample()).unwrap();
    assert_eq!((m.tag, &m.body[..]), (b'Q', &b"SELECT 1\0"[..]));
    assert!(Message::from_raw(Bytes::from_static(b"Q\0\0\0\x05ab")).is_err());
    assert!(Message::from_raw(Bytes::from_static(b"Q\0\0")).is_err());
}

#[tokio::test]
async fn reads_whole_messages_in_order_and_forwards_them_unchanged() {
    let mut input = sample().to_vec();
    input.extend_from_slice(b"S\0\0\0\x04");
    input.extend_from_slice(&sample());
    let (mut client, mut server) = tokio::io::duplex(3); // three bytes at a time
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        client.write_all(&input).await.unwrap();
    });
    let mut buf = BytesMut::new();
    let first = read_message(&mut server, &mut buf, 1024).await.unwrap().unwrap();
    assert_eq!(first.raw(), &sample());
    let sync = read_message(&mut server, &mut buf, 1024).await.unwrap().unwrap();
    assert_eq!((sync.tag, sync.body.len()), (b'S', 0));
    let third = read_message(&mut server, &mut buf, 1024).await.unwrap().unwrap();
    assert_eq!(third.into_raw(), sample());
    writer.await.unwrap();
    assert!(read_message(&mut server, &mut buf, 1024).await.unwrap().is_none());
}

#[tokio::test]
async fn an_over_long_message_is_refused_from_its_header() {
    // Declares 1 GiB and sends none of it: refused without waiting for or holding it.
    let mut r: &[u8] = b"d\x40\0\0\0";
    let mut buf = BytesMut::new();
    let err = read_message(&mut r, &mut buf, 64 * 1024).await.unwrap_err();
    assert!(matches!(err, WireError::TooLong { len: 0x4000_0000, max: 65_536 }));
    assert!(buf.capacity() < 64 * 1024);
}

#[tokio::test]
async fn an_end_inside_a_message_is_truncation() {
    for cut in [1, 4, 6, 10] {
        let whole = sample();
        let mut r = &whole[..cut];
        let mut buf = BytesMut::new();
        assert!(matches!(read_message(&mut r, &mut buf, 1024).await, Err(WireError::Truncated)), "cut at {cut}");
    }
    let mut r: &[u8] = b"Q\0\0\0\x02";
    assert!(matches!(read_message(&mut r, &mut BytesMut::new(), 1024).await, Err(WireError::Malformed(_))));
}
