//! Multipart request bodies (OpenAI image edits and variations, ComfyUI
//! uploads): the form is checked and its `model` field read from the held
//! bytes, the rest streams through; a target that names a model gets it
//! spliced into that part.

use crate::error::{Error, Kind};
use crate::extract;
use crate::http::head::RequestHead;
use std::borrow::Cow;
use std::ops::Range;

/// The `model` form field, where the body carries one.
pub struct MultipartModel {
    pub model: Option<String>,
    /// Span of the field's content in the held body bytes.
    pub span: Option<Range<usize>>,
}

/// Reads and checks a multipart/form-data body (`held` is all of it when
/// `whole`, else its first `body_buffer_bytes`). With `needs_model`, a
/// large body must show its `model` part within the held bytes, since
/// routing and rewriting happen before the rest is read.
pub fn read_model(
    head: &RequestHead,
    buf: &[u8],
    held: &[u8],
    whole: bool,
    needs_model: bool,
    body_buffer_bytes: usize,
) -> Result<MultipartModel, Error> {
    let boundary = head
        .header(buf, "content-type")
        .and_then(extract::multipart_boundary)
        .ok_or_else(|| {
            Error::new(
                Kind::BadRequest,
                "expected a multipart/form-data body (Content-Type with a boundary)",
            )
        })?;
    let scan = extract::multipart_scan(held, boundary, "model", whole)
        .map_err(|e| Error::new(Kind::BadRequest, format!("invalid multipart body: {e}")))?;
    let Some(span) = scan.field else {
        if !whole && needs_model && !scan.closed {
            return Err(Error::new(
                Kind::BodyTooLarge,
                format!(
                    "the multipart field `model` must come within the first {body_buffer_bytes} \
                     bytes (server.limits.body_buffer_bytes) of a body this large; send it \
                     before the files"
                ),
            ));
        }
        return Ok(MultipartModel {
            model: None,
            span: None,
        });
    };
    let model = std::str::from_utf8(&held[span.clone()])
        .map_err(|_| Error::new(Kind::BadRequest, "the multipart field `model` is not UTF-8"))?;
    Ok(MultipartModel {
        model: Some(model.to_string()),
        span: Some(span),
    })
}

/// The body to send: the client's, with the `model` part's content
/// replaced when the target names another model.
pub fn outgoing_body<'a>(
    held: &'a [u8],
    found: &MultipartModel,
    target_model: Option<&str>,
) -> Cow<'a, [u8]> {
    match (&found.span, target_model) {
        (Some(span), Some(m)) if found.model.as_deref() != Some(m) => {
            Cow::Owned(extract::splice(held, span, m.as_bytes()))
        }
        _ => Cow::Borrowed(held),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, Limits};

    fn request(content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut raw = format!(
            "POST /v1/images/edits HTTP/1.1\r\nHost: a\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        raw
    }

    const FORM: &[u8] = b"--b1\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ndall-e-2\r\n--b1\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\nPNGDATA\r\n--b1--\r\n";

    fn read(content_type: &str, body: &[u8], whole: bool) -> Result<MultipartModel, Error> {
        let raw = request(content_type, body);
        let head = parse_request(&raw, &Limits::default(), &mut Vec::new()).unwrap();
        let held = &raw[head.head_len..];
        read_model(&head, &raw, held, whole, true, 4096)
    }

    #[test]
    fn model_read_checked_and_rewritten() {
        let found = read("multipart/form-data; boundary=b1", FORM, true).unwrap();
        assert_eq!(found.model.as_deref(), Some("dall-e-2"));
        let out = outgoing_body(FORM, &found, Some("gpt-image-1"));
        assert_eq!(
            extract::multipart_field(&out, b"b1", "model"),
            Some(&b"gpt-image-1"[..])
        );
        assert_eq!(
            extract::multipart_field(&out, b"b1", "image"),
            Some(&b"PNGDATA"[..])
        );
        // Same model, or none named: the body as it came.
        assert!(matches!(
            outgoing_body(FORM, &found, Some("dall-e-2")),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            outgoing_body(FORM, &found, None),
            Cow::Borrowed(_)
        ));

        // Not multipart, or broken: 400.
        for (ct, body) in [
            ("application/json", &br#"{"model":"m"}"#[..]),
            ("multipart/form-data", FORM),
            ("multipart/form-data; boundary=other", FORM),
            ("multipart/form-data; boundary=b1", &FORM[..FORM.len() - 8]),
        ] {
            let e = read(ct, body, true).err().expect(ct);
            assert_eq!(e.status(), 400, "{ct}: {}", e.message);
        }
        // A large body whose held prefix has no model part yet: 413 that says why.
        let late = b"--b1\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nPNGDATA PNGDATA";
        let e = read("multipart/form-data; boundary=b1", late, false)
            .err()
            .unwrap();
        assert_eq!(e.status(), 413);
        assert!(e.message.contains("body_buffer_bytes"), "{}", e.message);
        // Without a model part at all, a whole body passes without one.
        let none = b"--b1\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nx\r\n--b1--\r\n";
        let found = read("multipart/form-data; boundary=b1", none, true).unwrap();
        assert!(found.model.is_none() && found.span.is_none());
    }
}
