//! Open Graph extraction for URL previews (`GET /_matrix/media/v3/preview_url`).
//! A small, forgiving tag scanner reads the `og:*` meta tags of a page's head, falling back to
//! `<title>` and `<meta name="description">`, instead of running a full HTML parser on untrusted pages.
//! The work and the output are bounded, and no input can make it panic.

use serde_json::{Map, Value};
use url::Url;

/// Only this much of a page is scanned: the metadata lives in the head, and the cap bounds
/// the work a hostile or huge page can cause.
const MAX_SCAN_BYTES: usize = 1024 * 1024;

/// Longest value kept, in chars; previews are short, and clients must not be sent whole articles.
const MAX_VALUE_CHARS: usize = 1000;

/// Most keys kept, so a page stuffed with meta tags cannot inflate the answer.
const MAX_KEYS: usize = 50;

/// Longer `og:` property names are dropped: real ones are short, and this keeps the keys bounded too.
const MAX_KEY_BYTES: usize = 100;

/// Longest entity decoded (`&#x10FFFF;` fits), so a stray `&` never starts a long search for `;`.
const MAX_ENTITY_BYTES: usize = 12;

/// The Open Graph data of an HTML page, as the Matrix spec's `GET /preview_url` answers it
/// (before the image is replaced by an mxc URI).
///
/// Keys are lower-cased `og:*` property names; the first occurrence of a key wins. Values are
/// trimmed strings, except `og:image:width` and `og:image:height`, which are numbers.
/// `og:image` is left as the page wrote it (possibly relative): resolve it with [`image_url`].
pub fn open_graph(html: &str) -> Map<String, Value> {
    let mut og = Map::new();
    let mut title = None;
    let mut description = None;
    for item in scan(prefix(html, MAX_SCAN_BYTES)) {
        match item {
            Item::Meta(attrs) => read_meta(&attrs, &mut og, &mut description),
            Item::Title(raw) => {
                if title.is_none() {
                    title = clean_text(raw);
                }
            }
        }
    }
    add_fallback(&mut og, "og:title", title);
    add_fallback(&mut og, "og:description", description);
    og
}

/// The absolute URL of the page's image (og:image resolved against the page URL), if any,
/// http/https only.
///
/// Other schemes (`javascript:`, `data:`, `file:` ...) are refused: the server is about to
/// fetch this URL, and only web URLs are meant to be fetched.
pub fn image_url(og: &Map<String, Value>, page_url: &Url) -> Option<Url> {
    let raw = og.get("og:image")?.as_str()?;
    let url = page_url.join(raw).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(url)
}

/// What the scanner found that matters for a preview, in document order.
enum Item<'a> {
    /// The attributes of a `<meta>` tag: lower-cased names, raw (undecoded) values.
    Meta(Vec<(String, &'a str)>),
    /// The raw (undecoded) text of a `<title>` element.
    Title(&'a str),
}

/// Records one `<meta>` tag: an `og:*` property into `og`, or the first plain description.
///
/// `property` is the Open Graph way and is checked first, but many pages use `name`, so both
/// count. Other prefixes (`twitter:` and the like) are not part of the answer.
fn read_meta(attrs: &[(String, &str)], og: &mut Map<String, Value>, description: &mut Option<String>) {
    let attr = |wanted: &str| attrs.iter().find(|(name, _)| name == wanted).map(|(_, value)| *value);
    let Some(content) = attr("content") else {
        return;
    };
    for key in [attr("property"), attr("name")].into_iter().flatten() {
        let key = decode_entities(key).trim().to_ascii_lowercase();
        if key.starts_with("og:") {
            insert_og(og, key, content);
            return;
        }
        if key == "description" && description.is_none() {
            *description = clean_value(content);
        }
    }
}

/// Inserts one `og:*` value unless the key is already there or the limits are reached.
///
/// Image dimensions are numbers in the spec's answer, so ones that are not numbers are dropped
/// rather than passed on as strings clients would not expect.
fn insert_og(og: &mut Map<String, Value>, key: String, raw: &str) {
    if og.len() >= MAX_KEYS || key.len() > MAX_KEY_BYTES || og.contains_key(&key) {
        return;
    }
    let Some(value) = clean_value(raw) else {
        return;
    };
    let value = if key == "og:image:width" || key == "og:image:height" {
        match value.parse::<u64>() {
            Ok(number) => Value::from(number),
            Err(_) => return,
        }
    } else {
        Value::String(value)
    };
    og.insert(key, value);
}

/// Fills `key` from a non-Open-Graph source when the page did not set it itself.
fn add_fallback(og: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(value) = value
        && og.len() < MAX_KEYS
        && !og.contains_key(key)
    {
        og.insert(key.to_owned(), Value::String(value));
    }
}

/// An attribute value as it goes into the answer: decoded, trimmed, bounded; `None` when empty,
/// so that an empty tag does not hide a later or fallback value.
fn clean_value(raw: &str) -> Option<String> {
    let decoded = decode_entities(raw);
    let value = truncate_chars(decoded.trim(), MAX_VALUE_CHARS);
    (!value.is_empty()).then(|| value.to_owned())
}

/// Element text as it goes into the answer: like [`clean_value`], but with runs of whitespace
/// collapsed, since titles are often spread over several indented lines.
fn clean_text(raw: &str) -> Option<String> {
    let collapsed = decode_entities(raw).split_whitespace().collect::<Vec<_>>().join(" ");
    let value = truncate_chars(&collapsed, MAX_VALUE_CHARS);
    (!value.is_empty()).then(|| value.to_owned())
}

/// Scans the page for `<meta>` and `<title>`, skipping comments, scripts and styles, and
/// stopping at `</head>` or at anything left unterminated.
///
/// Offsets are found in an ASCII-lower-cased copy, which has the same byte layout as the page,
/// so tag names can be matched case-insensitively while slices are taken from the original.
fn scan(html: &str) -> Vec<Item<'_>> {
    let lower = html.to_ascii_lowercase();
    let mut items = Vec::new();
    let mut pos = 0;
    while let Some(offset) = html.get(pos..).and_then(|rest| rest.find('<')) {
        match scan_tag(html, &lower, pos + offset, &mut items) {
            Some(next) => pos = next,
            None => break,
        }
    }
    items
}

/// Handles the markup starting at the `<` at `start`, returning where scanning goes on, or
/// `None` to stop (end of the head, or a construct that never ends: the rest is unreliable).
fn scan_tag<'a>(html: &'a str, lower: &str, start: usize, items: &mut Vec<Item<'a>>) -> Option<usize> {
    let rest = lower.get(start..)?;
    if rest.starts_with("<!--") {
        return find_from(lower, start + 4, "-->").map(|end| end + 3);
    }
    if let Some(closing) = rest.strip_prefix("</") {
        if tag_name(closing) == "head" {
            return None;
        }
        return find_from(lower, start, ">").map(|end| end + 1);
    }
    if rest.starts_with("<!") || rest.starts_with("<?") {
        return find_from(lower, start, ">").map(|end| end + 1);
    }
    let name = tag_name(rest.get(1..)?);
    if name.is_empty() {
        // A `<` in text, as in `a < b`.
        return Some(start + 1);
    }
    let (attrs, tag_end) = parse_attributes(html, start + 1 + name.len())?;
    match name {
        "meta" => items.push(Item::Meta(attrs)),
        "title" => {
            let close = find_from(lower, tag_end, "</title")?;
            items.push(Item::Title(html.get(tag_end..close)?));
            return Some(close);
        }
        // Their contents are code, not markup: a `<meta` in a script string must not count.
        "script" | "style" => return find_from(lower, tag_end, &format!("</{name}")),
        _ => {}
    }
    Some(tag_end)
}

/// The tag name at the start of `s` (letters then letters or digits), or `""` if there is none.
fn tag_name(s: &str) -> &str {
    if !s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) {
        return "";
    }
    let len = s.bytes().take_while(u8::is_ascii_alphanumeric).count();
    s.get(..len).unwrap_or("")
}

/// Parses the attributes of a tag from `pos` (just after its name) to its closing `>`.
///
/// Returns the attributes (lower-cased names, raw values; `""` for attributes without a value)
/// and the offset just after the `>`, or `None` if the tag or a quoted value never ends.
/// Every delimiter is ASCII, so every offset used lies on a char boundary.
fn parse_attributes(html: &str, mut pos: usize) -> Option<(Vec<(String, &str)>, usize)> {
    let bytes = html.as_bytes();
    let mut attrs = Vec::new();
    loop {
        pos = skip_whitespace(bytes, pos);
        match *bytes.get(pos)? {
            b'>' => return Some((attrs, pos + 1)),
            b'/' => {
                pos += 1;
                continue;
            }
            _ => {}
        }
        let name_end = find_byte(bytes, pos, |b| b.is_ascii_whitespace() || matches!(b, b'=' | b'>' | b'/'));
        let name = html.get(pos..name_end)?.to_ascii_lowercase();
        pos = skip_whitespace(bytes, name_end);
        if bytes.get(pos) != Some(&b'=') {
            attrs.push((name, ""));
            continue;
        }
        pos = skip_whitespace(bytes, pos + 1);
        let (value, next) = match *bytes.get(pos)? {
            quote @ (b'"' | b'\'') => {
                let end = find_byte(bytes, pos + 1, |b| b == quote);
                if end >= bytes.len() {
                    return None;
                }
                (html.get(pos + 1..end)?, end + 1)
            }
            _ => {
                let end = find_byte(bytes, pos, |b| b.is_ascii_whitespace() || b == b'>');
                (html.get(pos..end)?, end)
            }
        };
        attrs.push((name, value));
        pos = next;
    }
}

/// The offset of the first byte at or after `pos` matching `stop`, or the length if none does.
fn find_byte(bytes: &[u8], pos: usize, stop: impl Fn(u8) -> bool) -> usize {
    bytes.get(pos..).and_then(|rest| rest.iter().position(|&b| stop(b))).map_or(bytes.len(), |i| pos + i)
}

/// The offset of the first non-whitespace byte at or after `pos`.
fn skip_whitespace(bytes: &[u8], pos: usize) -> usize {
    find_byte(bytes, pos, |b| !b.is_ascii_whitespace())
}

/// The offset of `needle` in `haystack` at or after `from`.
fn find_from(haystack: &str, from: usize, needle: &str) -> Option<usize> {
    haystack.get(from..)?.find(needle).map(|i| from + i)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// The first `max` chars of `s`.
fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => s.get(..end).unwrap_or(s),
        None => s,
    }
}

/// Decodes the entities pages commonly use in attributes and titles; anything unknown or
/// invalid is kept as written rather than guessed at.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        let Some((text, entity)) = rest.split_at_checked(amp) else {
            break;
        };
        out.push_str(text);
        let (decoded, len) = decode_entity(entity).unwrap_or(('&', 1));
        out.push(decoded);
        rest = entity.get(len..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// Decodes the entity at the start of `s` (which starts with `&`), returning the char and the
/// entity's length in bytes.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    let semicolon = s.bytes().take(MAX_ENTITY_BYTES).position(|b| b == b';')?;
    let name = s.get(1..semicolon)?;
    let decoded = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        _ => decode_numeric(name.strip_prefix('#')?)?,
    };
    Some((decoded, semicolon + 1))
}

/// Decodes the digits of `&#NNN;` or `&#xHH;`; NUL, surrogates and out-of-range values are invalid.
fn decode_numeric(digits: &str) -> Option<char> {
    let (digits, radix) = match digits.strip_prefix(['x', 'X']) {
        Some(hex) => (hex, 16),
        None => (digits, 10),
    };
    // `from_str_radix` would also accept a sign, which an entity may not have.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let code = u32::from_str_radix(digits, radix).ok()?;
    char::from_u32(code).filter(|&c| c != '\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_url() -> Url {
        Url::parse("http://host.docker.internal:1234/test.html").unwrap()
    }

    fn extract(html: &str) -> Map<String, Value> {
        open_graph(html)
    }

    fn get<'a>(og: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
        og.get(key).and_then(Value::as_str)
    }

    #[test]
    fn the_rock() {
        let html = r#"<html prefix="og: http://ogp.me/ns#">
<head>
<title>The Rock (1996)</title>
<meta property="og:title" content="The Rock" />
<meta property="og:type" content="video.movie" />
<meta property="og:url" content="http://www.imdb.com/title/tt0117500/" />
<meta property="og:image" content="test.png" />
</head>
<body></body>
</html>
"#;
        let og = extract(html);
        assert_eq!(get(&og, "og:title"), Some("The Rock"));
        assert_eq!(get(&og, "og:type"), Some("video.movie"));
        assert_eq!(get(&og, "og:url"), Some("http://www.imdb.com/title/tt0117500/"));
        assert_eq!(get(&og, "og:image"), Some("test.png"));
        assert_eq!(og.len(), 4);
        assert_eq!(
            image_url(&og, &page_url()).map(String::from).as_deref(),
            Some("http://host.docker.internal:1234/test.png")
        );
    }

    #[test]
    fn title_fallback() {
        let og = extract("<HTML><Head><TITLE>\n  Hello\n\t  &amp; welcome  </TITLE></head></html>");
        assert_eq!(get(&og, "og:title"), Some("Hello & welcome"));
    }

    #[test]
    fn og_title_beats_title_wherever_it_is() {
        let og = extract("<head><title>Plain</title><meta property='og:title' content='Graph'></head>");
        assert_eq!(get(&og, "og:title"), Some("Graph"));
    }

    #[test]
    fn description_fallback() {
        let og = extract(
            r#"<meta name="description" content=" A page. "><meta name="twitter:title" content="x">"#,
        );
        assert_eq!(get(&og, "og:description"), Some("A page."));
        assert!(!og.contains_key("twitter:title"));
        assert_eq!(og.len(), 1);

        let og = extract(
            r#"<meta name="description" content="x"><meta property="og:description" content="graph">"#,
        );
        assert_eq!(get(&og, "og:description"), Some("graph"));
    }

    #[test]
    fn first_occurrence_wins_and_name_works() {
        let og = extract(
            r#"<meta name="og:site_name" content="one"><meta property="og:site_name" content="two">"#,
        );
        assert_eq!(get(&og, "og:site_name"), Some("one"));
    }

    #[test]
    fn entities() {
        let og = extract(concat!(
            r#"<meta property="og:title" content="a &amp; b &lt;c&gt; &quot;d&quot; &#39;e&apos; f&nbsp;g">"#,
            r#"<meta property="og:description" content="&#65;&#x42;&#X43; &#xD800; &#0; &bogus; &#; & &amp">"#,
        ));
        assert_eq!(get(&og, "og:title"), Some("a & b <c> \"d\" 'e' f\u{a0}g"));
        assert_eq!(get(&og, "og:description"), Some("ABC &#xD800; &#0; &bogus; &#; & &amp"));
    }

    #[test]
    fn attribute_styles() {
        let og = extract(concat!(
            "<META PROPERTY=og:type CONTENT=website>",
            "<meta content='It''s' property='og:title'/>",
            "<meta\n\tcontent = \"spaced\"\n property = \"og:description\" >",
            "<meta property=og:site_name content=bare/>",
        ));
        assert_eq!(get(&og, "og:type"), Some("website"));
        assert_eq!(get(&og, "og:title"), Some("It"));
        assert_eq!(get(&og, "og:description"), Some("spaced"));
        assert_eq!(get(&og, "og:site_name"), Some("bare/"));
    }

    #[test]
    fn script_style_and_comments_ignored() {
        let og = extract(concat!(
            "<script>var s = '<meta property=\"og:title\" content=\"script\">';</script>",
            "<style type='text/css'><meta property='og:type' content='style'></style>",
            "<!-- <meta property='og:url' content='comment'> -->",
            "<SCRIPT src='x>y'><title>not a title</title></SCRIPT>",
            "<meta property='og:title' content='real'>",
        ));
        assert_eq!(get(&og, "og:title"), Some("real"));
        assert_eq!(og.len(), 1);
    }

    #[test]
    fn stops_at_end_of_head() {
        let og =
            extract("<head></head><body><meta property='og:title' content='body'><title>t</title></body>");
        assert!(og.is_empty());
        let og = extract("<header><meta property='og:title' content='kept'></header>");
        assert_eq!(get(&og, "og:title"), Some("kept"));
    }

    #[test]
    fn image_dimensions() {
        let og = extract(concat!(
            "<meta property='og:image:width' content=' 640 '>",
            "<meta property='og:image:height' content='tall'>",
        ));
        assert_eq!(og.get("og:image:width"), Some(&Value::from(640u64)));
        assert!(!og.contains_key("og:image:height"));
    }

    #[test]
    fn limits() {
        let long = "é".repeat(MAX_VALUE_CHARS + 10);
        let og = extract(&format!("<meta property='og:title' content='{long}'>"));
        assert_eq!(get(&og, "og:title").map(|t| t.chars().count()), Some(MAX_VALUE_CHARS));

        let many: String =
            (0..200).map(|i| format!("<meta property='og:k{i}' content='v'>")).collect::<String>()
                + "<title>t</title>";
        assert_eq!(extract(&many).len(), MAX_KEYS);

        let mut huge = " ".repeat(MAX_SCAN_BYTES - 1);
        huge.push_str("é<meta property='og:title' content='too late'>");
        assert!(extract(&huge).is_empty());
    }

    #[test]
    fn garbage_does_not_panic() {
        let inputs = [
            "",
            "<",
            "<<<>>>",
            "</",
            "<!--",
            "<!-- -",
            "<meta",
            "<meta ",
            "<meta property",
            "<meta property=",
            "<meta property=\"og:title\" content=\"unterminated",
            "<meta property='og:title' content=unterminated",
            "<title>unterminated",
            "<script>",
            "<style><meta",
            "&",
            "&#",
            "&#x",
            "<meta property='og:title' content='&#x110000;&#99999999999999999999;&#-1;&#x+1;'>",
            "<é<ü=\"ö\" ä='€'>🦀</é><meta property=og:title content=🦀é>",
            "\u{0}\u{feff}<\u{0}meta\u{0}>",
            "<meta content='x' property='og:x' =y = / / >",
        ];
        for input in inputs {
            let og = extract(input);
            let _ = image_url(&og, &page_url());
        }
        assert_eq!(get(&extract("<p><meta property=og:title content=🦀é>"), "og:title"), Some("🦀é"));
        assert!(extract("<meta property=\"og:title\" content=\"unterminated").is_empty());

        // Cut a multi-byte page at every byte offset that is still a char boundary.
        let page = "<head><title>Ünïcödé 🦀 &amp;</title><meta property='og:title' content='€'></head>";
        for (end, _) in page.char_indices() {
            let _ = extract(&page[..end]);
        }
    }

    #[test]
    fn image_url_schemes() {
        let url = page_url();
        let image = |value: &str| {
            let mut og = Map::new();
            og.insert("og:image".to_owned(), Value::from(value));
            image_url(&og, &url).map(String::from)
        };
        assert_eq!(image("javascript:alert(1)"), None);
        assert_eq!(image("data:image/png;base64,AAAA"), None);
        assert_eq!(image("file:///etc/passwd"), None);
        assert_eq!(image("//cdn.example.org/a.jpg").as_deref(), Some("http://cdn.example.org/a.jpg"));
        assert_eq!(image("https://example.org/a.jpg").as_deref(), Some("https://example.org/a.jpg"));
        assert_eq!(image("/img/b.png").as_deref(), Some("http://host.docker.internal:1234/img/b.png"));
        assert_eq!(image_url(&Map::new(), &url), None);

        let og = extract("<meta property='og:image' content='javascript:alert(1)'>");
        assert_eq!(get(&og, "og:image"), Some("javascript:alert(1)"));
        assert_eq!(image_url(&og, &url), None);
    }
}
