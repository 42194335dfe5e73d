//! Array counts a request claims, checked against the bytes that carry them, before decoding.
//!
//! kafka-protocol's decoder (0.18) sizes every array with `Vec::with_capacity(count)` straight
//! from the wire, before decoding a single element. A few-byte request claiming 2^31-1 topics
//! would make it reserve `count × size_of::<element>()` — gigabytes — which fails the guest's
//! memory cap (a trap) or, natively, aborts the process. Every array element takes at least one
//! byte on the wire, so a count larger than the bytes left is impossible: [`check`] walks the
//! request body exactly as the decoder will, and rejects such a count before anything is
//! allocated. Decoding after a successful check allocates in proportion to the bytes received.
//!
//! The walk interprets the request schemas generated (by `build.rs`) from the same JSON message
//! specs kafka-protocol's decoders were generated from: Kafka 4.1.0's, read from the
//! `kafka-clients` jar. It reads what the decoder reads, field for field (the
//! `claims_match_the_decoder` property test holds it to that), so a new API needs no walker of
//! its own. Where the decoder would fail anyway (a short buffer, a negative length, a tag not
//! valid at this version) the walk stops and lets the decoder report it.

/// Why the walk stopped early.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The decoder fails here on its own (too few bytes, a negative length, an invalid tag).
    Malformed,
    /// An array claims more elements than the bytes left could hold.
    Impossible { count: u64, min_bytes: u64, remaining: usize },
}

type Step = Result<(), Stop>;

/// Check the request body of `api_key` at `version`: an error names an impossible array count.
/// Bodies the decoder rejects for other reasons, and APIs this module does not know, pass.
pub fn check(api_key: i16, version: i16, body: &[u8]) -> Result<(), String> {
    match walk(api_key, version, body) {
        Some(Err(Stop::Impossible { count, min_bytes, remaining })) => Err(format!(
            "malformed request (api key {api_key} v{version}): an array claims {count} elements of at \
             least {min_bytes} byte(s) with {remaining} bytes left"
        )),
        _ => Ok(()),
    }
}

/// Walk `body` as the decoder would: `Some(Ok(consumed))` when it decodes (structurally), `None`
/// for an API this module does not describe.
pub fn walk(api_key: i16, version: i16, body: &[u8]) -> Option<Result<usize, Stop>> {
    let request = request(api_key)?;
    if !request.valid.contains(version) {
        // The spec does not define this version: the decoder refuses it.
        return Some(Err(Stop::Malformed));
    }
    let mut w = Walk { buf: body, flexible: request.flexible.contains(version) };
    Some(w.fields(request.fields, version).map(|()| body.len() - w.buf.len()))
}

/// The schema of `api_key`'s request, as Kafka's spec describes it.
pub(crate) fn request(api_key: i16) -> Option<&'static Request> {
    REQUESTS.binary_search_by_key(&api_key, |r| r.key).ok().map(|i| &REQUESTS[i])
}

// The generated `REQUESTS`: one entry per request spec, in api-key order.
include!(concat!(env!("OUT_DIR"), "/requests.rs"));

/// A request's schema.
pub(crate) struct Request {
    pub key: i16,
    /// The versions the spec defines.
    pub valid: Versions,
    /// The versions with compact lengths and tagged-field sections.
    pub flexible: Versions,
    pub fields: &'static [Field],
}

/// An inclusive version range; empty when the first is above the last.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Versions(pub i16, pub i16);

impl Versions {
    pub fn contains(self, version: i16) -> bool {
        (self.0..=self.1).contains(&version)
    }
}

/// One field of a request or of a struct in it.
pub(crate) struct Field {
    /// The versions the field exists in.
    versions: Versions,
    /// A tagged field's tag and tagged versions; `None` for a field in the fixed layout.
    tag: Option<(u32, Versions)>,
    ty: Ty,
}

/// A field's wire type, as far as the walk needs it.
pub(crate) enum Ty {
    /// A fixed-width value of this many bytes (bool, intN, uintN, float64, uuid).
    Fixed(u8),
    /// A (nullable) string.
    String,
    /// (Nullable) bytes or records.
    Bytes,
    /// A (nullable) array.
    Array(&'static Ty),
    /// A struct: its fields, then (flexible versions) its tagged-field section.
    Struct(&'static [Field]),
    /// A struct that is nullable in these versions: there, an int8 marker first, the struct
    /// following only when it is 1 (kafka-protocol reads any other value as null).
    OptionStruct(&'static [Field], Versions),
}

/// A cursor over the body; `flexible` selects compact lengths and tagged-field sections.
struct Walk<'a> {
    buf: &'a [u8],
    flexible: bool,
}

impl Walk<'_> {
    fn skip(&mut self, n: usize) -> Step {
        match self.buf.get(n..) {
            Some(rest) => {
                self.buf = rest;
                Ok(())
            }
            None => Err(Stop::Malformed),
        }
    }

    fn int16(&mut self) -> Result<i16, Stop> {
        let b = self.buf.get(..2).ok_or(Stop::Malformed)?;
        let v = i16::from_be_bytes([b[0], b[1]]);
        self.skip(2).map(|()| v)
    }

    fn int32(&mut self) -> Result<i32, Stop> {
        let b = self.buf.get(..4).ok_or(Stop::Malformed)?;
        let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        self.skip(4).map(|()| v)
    }

    /// An unsigned varint, read exactly as kafka-protocol's `UnsignedVarInt` does (at most five
    /// bytes, excess bits dropped).
    fn uvarint(&mut self) -> Result<u32, Stop> {
        let mut value = 0u32;
        for i in 0..5 {
            let (&b, rest) = self.buf.split_first().ok_or(Stop::Malformed)?;
            self.buf = rest;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A (nullable) string: an int16 length, or a compact one.
    fn string(&mut self) -> Step {
        if self.flexible {
            match self.uvarint()? {
                0 => Ok(()),
                n => self.skip((n - 1) as usize),
            }
        } else {
            match self.int16()? {
                -1 => Ok(()),
                n if n >= 0 => self.skip(n as usize),
                _ => Err(Stop::Malformed),
            }
        }
    }

    /// (Nullable) bytes: an int32 length, or a compact one.
    fn bytes(&mut self) -> Step {
        if self.flexible {
            match self.uvarint()? {
                0 => Ok(()),
                n => self.skip((n - 1) as usize),
            }
        } else {
            match self.int32()? {
                -1 => Ok(()),
                n if n >= 0 => self.skip(n as usize),
                _ => Err(Stop::Malformed),
            }
        }
    }

    /// A (nullable) array of elements of at least `min_bytes` each: the count is checked against
    /// the bytes left before any element is walked.
    fn array(&mut self, min_bytes: u64, mut element: impl FnMut(&mut Self) -> Step) -> Step {
        let count = if self.flexible {
            match self.uvarint()? {
                0 => return Ok(()),
                n => u64::from(n - 1),
            }
        } else {
            match self.int32()? {
                -1 => return Ok(()),
                n if n >= 0 => n as u64,
                _ => return Err(Stop::Malformed),
            }
        };
        let remaining = self.buf.len();
        if count.saturating_mul(min_bytes) > remaining as u64 {
            return Err(Stop::Impossible { count, min_bytes, remaining });
        }
        for _ in 0..count {
            element(self)?;
        }
        Ok(())
    }

    /// Walk a value of type `ty` at `version`.
    fn ty(&mut self, ty: &Ty, version: i16) -> Step {
        match ty {
            Ty::Fixed(n) => self.skip(usize::from(*n)),
            Ty::String => self.string(),
            Ty::Bytes => self.bytes(),
            Ty::Array(element) => {
                let min = self.min_bytes(element, version);
                self.array(min, |w| w.ty(element, version))
            }
            Ty::Struct(fields) => self.fields(fields, version),
            Ty::OptionStruct(fields, nullable) => {
                if nullable.contains(version) {
                    let marker = *self.buf.first().ok_or(Stop::Malformed)?;
                    self.skip(1)?;
                    if marker != 1 {
                        return Ok(());
                    }
                }
                self.fields(fields, version)
            }
        }
    }

    /// Walk a struct's fields at `version`: those in the fixed layout in order, then the tagged
    /// section, where a known tag is read as its field (and is malformed outside its tagged
    /// versions) and any other is skipped by its size — as the decoder does.
    fn fields(&mut self, fields: &[Field], version: i16) -> Step {
        for field in fields.iter().filter(|f| f.tag.is_none() && f.versions.contains(version)) {
            self.ty(&field.ty, version)?;
        }
        self.tagged(|w, tag| {
            let field = fields.iter().find(|f| matches!(f.tag, Some((t, _)) if t == tag))?;
            let (_, tagged) = field.tag?;
            Some(if tagged.contains(version) && field.versions.contains(version) {
                w.ty(&field.ty, version)
            } else {
                Err(Stop::Malformed)
            })
        })
    }

    /// The fewest bytes a value of `ty` takes on the wire at `version`: the floor an array's
    /// count is checked against.
    fn min_bytes(&self, ty: &Ty, version: i16) -> u64 {
        match ty {
            Ty::Fixed(n) => u64::from(*n),
            Ty::String if !self.flexible => 2,
            Ty::Bytes | Ty::Array(_) if !self.flexible => 4,
            Ty::String | Ty::Bytes | Ty::Array(_) => 1,
            Ty::OptionStruct(_, nullable) if nullable.contains(version) => 1,
            Ty::Struct(fields) | Ty::OptionStruct(fields, _) => {
                let laid_out = fields.iter().filter(|f| f.tag.is_none() && f.versions.contains(version));
                laid_out.map(|f| self.min_bytes(&f.ty, version)).sum::<u64>() + u64::from(self.flexible)
            }
        }
    }

    /// A tagged-field section (flexible versions only). `known` walks a tag the decoder reads
    /// itself (from the buffer, not from the tag's size) and returns `None` for the others,
    /// which the decoder skips by their size.
    fn tagged(&mut self, mut known: impl FnMut(&mut Self, u32) -> Option<Step>) -> Step {
        if !self.flexible {
            return Ok(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            let tag = self.uvarint()?;
            let size = self.uvarint()?;
            match known(self, tag) {
                Some(step) => step?,
                None => self.skip(size as usize)?,
            }
        }
        Ok(())
    }
}
