//! PyTorch `.pt` / `.pth` files as `torch.save` writes them (the zip format of PyTorch >=
//! 1.6), read without PyTorch and without running any pickled code.
//!
//! Layout: a zip archive with one folder (`archive/` in current PyTorch) holding `data.pkl`,
//! a pickle of the saved object whose tensors refer by persistent id to storages stored as
//! members `data/<key>` (raw little-endian elements, uncompressed), and `byteorder`.
//!
//! The pickle is read by a restricted unpickler that builds plain values and accepts only
//! what `torch.save` writes for tensors and plain containers: dicts, `collections.OrderedDict`,
//! lists, tuples, str, int, float, bool, None, tensors rebuilt by
//! `torch._utils._rebuild_tensor_v2` (or `_rebuild_parameter`) from `torch.*Storage` /
//! `torch.storage.UntypedStorage` persistent ids. Any other global (a pickled class or
//! function) is refused, naming it, before anything is built from it: nothing in the file
//! is ever executed.
//!
//! Tensors are named by their path through the containers, joined by `.`: the state dict
//! entry `fc.weight` of `{"state_dict": {"fc.weight": ...}}` is `state_dict.fc.weight`, and
//! may also be asked for as `fc.weight`: a name not found in full is looked for below
//! wrapper containers named `state_dict`, `model_state_dict`, `model`, `module` or `net`
//! (also a DataParallel `module.` prefix), and must then be found exactly once.
//!
//! dtypes: float32 and float64 are kept; float16 and bfloat16 are widened exactly to
//! float32; int64, int32, int16, int8, uint8 and bool as they are. Storage offsets and
//! strides are honoured (non-contiguous tensors are gathered into C order). The legacy
//! (pre-zip) format is refused with a message saying how to re-save the file.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use crate::array::{element_count, read_elements, shape_string, ArrayData, DType, NpyArray};
use crate::error::{DataError, Result};
use crate::mapped::{crc32, map_file, MappedFloats};
use crate::npz::list_or_none;

const FORMAT: &str = "PyTorch (.pt)";

/// The dtypes this reader supports, for messages.
pub const SUPPORTED_TORCH_DTYPES: &str =
    "float32, float64, float16, bfloat16 (widened to float32), int64, int32, int16, int8, uint8, bool";

/// Wrapper containers a key is also looked for below (see the module documentation).
pub const WRAPPER_KEYS: [&str; 5] = ["state_dict", "model_state_dict", "model", "module", "net"];

/// Containers nested deeper than this are refused (a pickle can nest without bound).
const MAX_DEPTH: usize = 64;
/// More leaves than this (counting shared sub-containers each time) are refused.
const MAX_LEAVES: usize = 1 << 20;
/// At most this many names are listed in a message.
const LISTED_NAMES: usize = 40;

/// A tensor's element type as its storage class names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TorchDType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl TorchDType {
    fn from_storage(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => TorchDType::F32,
            "DoubleStorage" => TorchDType::F64,
            "HalfStorage" => TorchDType::F16,
            "BFloat16Storage" => TorchDType::BF16,
            "LongStorage" => TorchDType::I64,
            "IntStorage" => TorchDType::I32,
            "ShortStorage" => TorchDType::I16,
            "CharStorage" => TorchDType::I8,
            "ByteStorage" | "UntypedStorage" => TorchDType::U8,
            "BoolStorage" => TorchDType::Bool,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            TorchDType::F64 | TorchDType::I64 => 8,
            TorchDType::F32 | TorchDType::I32 => 4,
            TorchDType::F16 | TorchDType::BF16 | TorchDType::I16 => 2,
            TorchDType::I8 | TorchDType::U8 | TorchDType::Bool => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            TorchDType::F32 => "float32",
            TorchDType::F64 => "float64",
            TorchDType::F16 => "float16",
            TorchDType::BF16 => "bfloat16",
            TorchDType::I64 => "int64",
            TorchDType::I32 => "int32",
            TorchDType::I16 => "int16",
            TorchDType::I8 => "int8",
            TorchDType::U8 => "uint8",
            TorchDType::Bool => "bool",
        }
    }

    /// The element type the data are decoded to, when it is the stored one.
    fn stored(self) -> Option<DType> {
        Some(match self {
            TorchDType::F32 => DType::F32,
            TorchDType::F64 => DType::F64,
            TorchDType::I64 => DType::I64,
            TorchDType::I32 => DType::I32,
            TorchDType::I16 => DType::I16,
            TorchDType::I8 => DType::I8,
            TorchDType::U8 => DType::U8,
            TorchDType::Bool => DType::Bool,
            TorchDType::F16 | TorchDType::BF16 => return None,
        })
    }
}

/// A tensor in the pickle: where its elements are.
#[derive(Clone, Debug, PartialEq)]
struct TensorRef {
    /// The storage's key: its data are the member `<prefix>data/<key>`.
    storage: String,
    dtype: TorchDType,
    /// Elements in the storage, as its persistent id says.
    storage_numel: u64,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    fn count(&self) -> Option<usize> {
        element_count(&self.shape)
    }

    /// One past the largest storage element the tensor touches (0 when it is empty).
    fn extent(&self) -> Option<usize> {
        if self.shape.contains(&0) {
            return Some(0);
        }
        self.shape
            .iter()
            .zip(&self.stride)
            .try_fold(self.offset.checked_add(1)?, |acc, (&n, &s)| {
                acc.checked_add((n - 1).checked_mul(s)?)
            })
    }

    /// Whether the elements lie in C order from `offset` on (dims of size 1 may have any
    /// stride).
    fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&n, &s) in self.shape.iter().zip(&self.stride).rev() {
            if n != 1 && s != expected {
                return false;
            }
            expected = expected.saturating_mul(n);
        }
        true
    }
}

/// The callables and classes the unpickler knows.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    RebuildTensorV2,
    RebuildParameter,
    OrderedDict,
    Storage(TorchDType),
}

type Id = usize;

/// A value built by the unpickler; containers refer to others by their place in the arena,
/// so that a memoised container filled after it was memoised is the same value everywhere.
#[derive(Clone, Debug)]
enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float,
    Str(String),
    Bytes,
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    Storage {
        dtype: TorchDType,
        key: String,
        numel: u64,
    },
    Tensor(TensorRef),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::None => "None",
            Node::Bool(_) => "a bool",
            Node::Int(_) => "an int",
            Node::Float => "a float",
            Node::Str(_) => "a str",
            Node::Bytes => "a bytes object",
            Node::List(_) => "a list",
            Node::Tuple(_) => "a tuple",
            Node::Dict(_) => "a dict",
            Node::Global(_) => "a class or function",
            Node::Storage { .. } => "a storage",
            Node::Tensor(_) => "a tensor",
        }
    }
}

/// The restricted unpickler's state.
struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

/// Why a pickle was refused; turned into a [`DataError`] naming the file.
type Refusal = String;

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Unpickler {
            data,
            pos: 0,
            nodes: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], Refusal> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "the pickle ends early (at byte {} of {}; the file is truncated or corrupt)",
                    self.data.len(),
                    self.data.len()
                )
            })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> std::result::Result<u8, Refusal> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> std::result::Result<[u8; N], Refusal> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn len_of(&mut self, n: u64) -> std::result::Result<usize, Refusal> {
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.data.len() - self.pos)
            .ok_or_else(|| {
                format!(
                    "a length of {n} bytes runs past the end of the pickle (truncated or corrupt)"
                )
            })
    }

    fn line(&mut self) -> std::result::Result<&'a str, Refusal> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("a GLOBAL name has no end (truncated or corrupt)")?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| "a GLOBAL name is not UTF-8".to_string())
    }

    fn push(&mut self, node: Node) {
        self.nodes.push(node);
        self.stack.push(self.nodes.len() - 1);
    }

    fn pop(&mut self) -> std::result::Result<Id, Refusal> {
        if self.marks.last().is_some_and(|&m| self.stack.len() <= m) {
            return Err("a value is taken from below a MARK (corrupt pickle)".to_string());
        }
        self.stack
            .pop()
            .ok_or_else(|| "the pickle's stack is empty where a value is needed (corrupt)".into())
    }

    fn pop_mark(&mut self) -> std::result::Result<Vec<Id>, Refusal> {
        let mark = self
            .marks
            .pop()
            .ok_or("an opcode needs a MARK that is not there (corrupt pickle)")?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn top(&self) -> std::result::Result<Id, Refusal> {
        match (self.stack.last(), self.marks.last()) {
            (Some(_), Some(&m)) if self.stack.len() <= m => {
                Err("a value is taken from below a MARK (corrupt pickle)".to_string())
            }
            (Some(&id), _) => Ok(id),
            (None, _) => {
                Err("the pickle's stack is empty where a value is needed (corrupt)".into())
            }
        }
    }

    fn int(&self, id: Id, what: &str) -> std::result::Result<i64, Refusal> {
        match &self.nodes[id] {
            Node::Int(v) => Ok(*v),
            Node::Bool(b) => Ok(i64::from(*b)),
            other => Err(format!("{what} is {}, expected an int", other.kind())),
        }
    }

    fn usize_of(&self, id: Id, what: &str) -> std::result::Result<usize, Refusal> {
        let v = self.int(id, what)?;
        usize::try_from(v).map_err(|_| format!("{what} is {v}, expected a non-negative int"))
    }

    fn usizes(&self, id: Id, what: &str) -> std::result::Result<Vec<usize>, Refusal> {
        match &self.nodes[id] {
            Node::Tuple(items) | Node::List(items) => {
                items.iter().map(|&i| self.usize_of(i, what)).collect()
            }
            other => Err(format!(
                "{what} is {}, expected a tuple of ints",
                other.kind()
            )),
        }
    }

    fn global(module: &str, name: &str) -> std::result::Result<Global, Refusal> {
        let found = match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch", storage) | ("torch.storage", storage @ "UntypedStorage") => {
                TorchDType::from_storage(storage).map(Global::Storage)
            }
            _ => None,
        };
        found.ok_or_else(|| {
            format!(
                "refused the pickled global '{module}.{name}': only tensors and plain containers \
                 (dict, OrderedDict, list, tuple, str, int, float, bool, None) are read, and \
                 nothing in the file is executed; save a dict of tensors (e.g. of \
                 model.state_dict()) instead"
            )
        })
    }

    fn reduce(&mut self, callable: Id, args: Id) -> std::result::Result<Node, Refusal> {
        let Node::Global(global) = self.nodes[callable] else {
            return Err(format!(
                "REDUCE calls {}, not a known function (corrupt or unsupported pickle)",
                self.nodes[callable].kind()
            ));
        };
        let Node::Tuple(args) = self.nodes[args].clone() else {
            return Err("REDUCE's arguments are not a tuple (corrupt pickle)".to_string());
        };
        match global {
            Global::OrderedDict if args.is_empty() => Ok(Node::Dict(Vec::new())),
            Global::OrderedDict => {
                Err("collections.OrderedDict is called with arguments (unsupported)".to_string())
            }
            Global::RebuildParameter => match args.first().map(|&a| &self.nodes[a]) {
                Some(Node::Tensor(t)) => Ok(Node::Tensor(t.clone())),
                _ => Err("torch._utils._rebuild_parameter is not given a tensor".to_string()),
            },
            Global::RebuildTensorV2 => {
                if args.len() < 4 {
                    return Err(format!(
                        "torch._utils._rebuild_tensor_v2 is given {} arguments, expected at least 4",
                        args.len()
                    ));
                }
                let Node::Storage { dtype, key, numel } = self.nodes[args[0]].clone() else {
                    return Err(format!(
                        "torch._utils._rebuild_tensor_v2 is given {} as its storage",
                        self.nodes[args[0]].kind()
                    ));
                };
                let offset = self.usize_of(args[1], "a tensor's storage offset")?;
                let shape = self.usizes(args[2], "a tensor's size")?;
                let stride = self.usizes(args[3], "a tensor's stride")?;
                if shape.len() != stride.len() {
                    return Err(format!(
                        "a tensor has size {shape:?} but stride {stride:?} (corrupt pickle)"
                    ));
                }
                Ok(Node::Tensor(TensorRef {
                    storage: key,
                    dtype,
                    storage_numel: numel,
                    offset,
                    shape,
                    stride,
                }))
            }
            Global::Storage(_) => {
                Err("a storage class is called (unsupported pickle of a storage)".to_string())
            }
        }
    }

    fn persistent_load(&mut self, pid: Id) -> std::result::Result<Node, Refusal> {
        let Node::Tuple(items) = self.nodes[pid].clone() else {
            return Err(format!(
                "a persistent id is {}, expected a tuple",
                self.nodes[pid].kind()
            ));
        };
        let is_storage =
            matches!(items.first().map(|&i| &self.nodes[i]), Some(Node::Str(s)) if s == "storage");
        if !is_storage || items.len() < 5 {
            return Err(
                "a persistent id is not a ('storage', type, key, location, numel) tuple"
                    .to_string(),
            );
        }
        let Node::Global(Global::Storage(dtype)) = self.nodes[items[1]] else {
            return Err("a storage's type is not a torch storage class".to_string());
        };
        let Node::Str(key) = self.nodes[items[2]].clone() else {
            return Err("a storage's key is not a str".to_string());
        };
        let numel = self.int(items[4], "a storage's element count")?;
        let numel = u64::try_from(numel)
            .map_err(|_| format!("a storage's element count is {numel}, expected >= 0"))?;
        Ok(Node::Storage { dtype, key, numel })
    }

    /// Runs the pickle to its STOP; returns the root value.
    fn run(&mut self) -> std::result::Result<Id, Refusal> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(format!("pickle protocol {proto} is not supported"));
                    }
                }
                0x95 => {
                    self.le::<8>()?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(top);
                }
                b'N' => self.push(Node::None),
                0x88 => self.push(Node::Bool(true)),
                0x89 => self.push(Node::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Node::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Node::Int(i64::from(v)));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Node::Int(i64::from(v)));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        u64::from(self.u8()?)
                    } else {
                        u64::from(u32::from_le_bytes(self.le()?))
                    };
                    let n = self.len_of(n)?;
                    let bytes = self.take(n)?;
                    if n > 8 {
                        return Err(format!("an integer of {n} bytes is too large"));
                    }
                    let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    };
                    let mut a = [fill; 8];
                    a[..n].copy_from_slice(bytes);
                    self.push(Node::Int(i64::from_le_bytes(a)));
                }
                b'G' => {
                    self.le::<8>()?;
                    self.push(Node::Float);
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => u64::from(u32::from_le_bytes(self.le()?)),
                        0x8c => u64::from(self.u8()?),
                        _ => u64::from_le_bytes(self.le()?),
                    };
                    let n = self.len_of(n)?;
                    let text = std::str::from_utf8(self.take(n)?)
                        .map_err(|_| "a str is not valid UTF-8 (corrupt pickle)".to_string())?;
                    self.push(Node::Str(text.to_string()));
                }
                b'C' | b'B' | 0x8e => {
                    let n = match op {
                        b'C' => u64::from(self.u8()?),
                        b'B' => u64::from(u32::from_le_bytes(self.le()?)),
                        _ => u64::from_le_bytes(self.le()?),
                    };
                    let n = self.len_of(n)?;
                    self.take(n)?;
                    self.push(Node::Bytes);
                }
                b'}' => self.push(Node::Dict(Vec::new())),
                b']' => self.push(Node::List(Vec::new())),
                b')' => self.push(Node::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Node::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(&items)?;
                    self.push(Node::Dict(pairs));
                }
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        vec![self.pop()?]
                    } else {
                        self.pop_mark()?
                    };
                    let list = self.top()?;
                    match &mut self.nodes[list] {
                        Node::List(v) => v.extend(items),
                        other => {
                            return Err(format!(
                                "APPEND to {}, expected a list (corrupt pickle)",
                                other.kind()
                            ))
                        }
                    }
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = self.pop()?;
                        let k = self.pop()?;
                        vec![k, v]
                    } else {
                        self.pop_mark()?
                    };
                    let new = pairs(&items)?;
                    let dict = self.top()?;
                    match &mut self.nodes[dict] {
                        Node::Dict(v) => v.extend(new),
                        other => {
                            return Err(format!(
                                "SETITEM on {}, expected a dict (corrupt pickle)",
                                other.kind()
                            ))
                        }
                    }
                }
                b'q' | b'r' | 0x94 => {
                    let index = match op {
                        b'q' => u64::from(self.u8()?),
                        b'r' => u64::from(u32::from_le_bytes(self.le()?)),
                        _ => self.memo.len() as u64,
                    };
                    let top = self.top()?;
                    self.memo.insert(index, top);
                }
                b'h' | b'j' => {
                    let index = if op == b'h' {
                        u64::from(self.u8()?)
                    } else {
                        u64::from(u32::from_le_bytes(self.le()?))
                    };
                    let id = *self.memo.get(&index).ok_or_else(|| {
                        format!("memo entry {index} is read before it is written (corrupt pickle)")
                    })?;
                    self.stack.push(id);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let global = Self::global(module, name)?;
                    self.push(Node::Global(global));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&self.nodes[module], &self.nodes[name]) {
                        (Node::Str(m), Node::Str(n)) => {
                            let global = Self::global(m, n)?;
                            self.push(Node::Global(global));
                        }
                        _ => return Err("STACK_GLOBAL of non-str names (corrupt pickle)".into()),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let node = self.reduce(callable, args)?;
                    self.push(node);
                }
                b'b' => {
                    // Only the state of an OrderedDict (a state dict's `_metadata`) is expected;
                    // it is dropped.
                    let state = self.pop()?;
                    let target = self.top()?;
                    match (&self.nodes[target], &self.nodes[state]) {
                        (Node::Dict(_), Node::Dict(_) | Node::None) => {}
                        (t, s) => {
                            return Err(format!(
                                "BUILD sets the state of {} to {} (only plain containers are read)",
                                t.kind(),
                                s.kind()
                            ))
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let node = self.persistent_load(pid)?;
                    self.push(node);
                }
                0x81 | 0x92 => {
                    return Err(format!(
                        "the pickle creates an object of a class (opcode 0x{op:02x} at byte {at}); only tensors and plain containers are read"
                    ))
                }
                _ => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{op:02x} at byte {at} (only what torch.save writes for tensors and plain containers is read)"
                    ))
                }
            }
        }
    }
}

fn pairs(items: &[Id]) -> std::result::Result<Vec<(Id, Id)>, Refusal> {
    if !items.len().is_multiple_of(2) {
        return Err("a dict is given an odd number of keys and values (corrupt pickle)".into());
    }
    Ok(items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
}

/// What sits at one path of the saved object.
#[derive(Clone, Debug)]
enum Leaf {
    Tensor(TensorRef),
    /// Anything but a tensor or a container: its kind, for messages.
    Other(&'static str),
}

/// Flattens the containers below `id` into (dotted path, leaf).
fn flatten(
    nodes: &[Node],
    id: Id,
    path: &str,
    depth: usize,
    out: &mut Vec<(String, Leaf)>,
) -> std::result::Result<(), Refusal> {
    if depth > MAX_DEPTH {
        return Err(format!("containers nest deeper than {MAX_DEPTH} levels"));
    }
    if out.len() > MAX_LEAVES {
        return Err(format!("the file holds more than {MAX_LEAVES} values"));
    }
    let join = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    if depth > 0 && matches!(nodes[id], Node::Dict(_) | Node::List(_) | Node::Tuple(_)) {
        out.push((path.to_string(), Leaf::Other(nodes[id].kind())));
    }
    match &nodes[id] {
        Node::Dict(entries) => {
            for &(k, v) in entries {
                let name = match &nodes[k] {
                    Node::Str(s) => s.clone(),
                    Node::Int(i) => i.to_string(),
                    other => {
                        return Err(format!(
                            "a dict key is {}, expected a str or an int",
                            other.kind()
                        ))
                    }
                };
                flatten(nodes, v, &join(&name), depth + 1, out)?;
            }
        }
        Node::List(items) | Node::Tuple(items) => {
            for (i, &v) in items.iter().enumerate() {
                flatten(nodes, v, &join(&i.to_string()), depth + 1, out)?;
            }
        }
        Node::Tensor(t) => out.push((path.to_string(), Leaf::Tensor(t.clone()))),
        other => out.push((path.to_string(), Leaf::Other(other.kind()))),
    }
    Ok(())
}

fn zip_error(path: &Path, context: &str, error: ZipError) -> DataError {
    match error {
        ZipError::Io(e)
            if e.kind() != io::ErrorKind::UnexpectedEof
                && e.kind() != io::ErrorKind::InvalidData =>
        {
            DataError::io(path, "reading", e)
        }
        other => DataError::format(path, FORMAT, format!("{context}: {other}")),
    }
}

/// An open `torch.save` file whose tensors can be read one at a time.
pub struct TorchReader {
    path: PathBuf,
    archive: ZipArchive<BufReader<File>>,
    /// The archive's folder, with its trailing `/`.
    prefix: String,
    /// Every value of the saved object by dotted path, in pickle order.
    leaves: Vec<(String, Leaf)>,
    /// The paths of the tensors, in pickle order.
    names: Vec<String>,
}

impl std::fmt::Debug for TorchReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchReader")
            .field("path", &self.path)
            .field("names", &self.names)
            .finish()
    }
}

impl TorchReader {
    /// Opens the file and reads its pickle (not the tensors' data).
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = crate::io::open_regular(path, "a PyTorch .pt file")?;
        let mut magic = [0u8; 4];
        let got =
            read_up_to(&mut file, &mut magic).map_err(|e| DataError::io(path, "reading", e))?;
        if got >= 2 && magic[0] == 0x80 && magic[1] <= 5 {
            return Err(DataError::format(
                path,
                FORMAT,
                "this is the legacy (pre-zip) torch.save format, which nclab does not read; \
                 re-save it with a current PyTorch: torch.save(torch.load(OLD), NEW)",
            ));
        }
        if got < 4 || &magic != b"PK\x03\x04" {
            return Err(DataError::format(
                path,
                FORMAT,
                "not a zip archive as torch.save writes (the file is truncated, corrupt, or not a PyTorch file)",
            ));
        }
        let file = crate::io::open_regular(path, "a PyTorch .pt file")?;
        let mut archive =
            ZipArchive::new(BufReader::with_capacity(1 << 16, file)).map_err(|e| {
                zip_error(
                    path,
                    "cannot read the zip directory (the file is truncated or corrupt)",
                    e,
                )
            })?;
        if archive.has_duplicate_names() {
            return Err(DataError::format(
                path,
                FORMAT,
                "two members have the same name (which one holds the data is undefined)",
            ));
        }
        let pickles: Vec<String> = archive
            .file_names()
            .filter_map(|n| n.ok())
            .filter(|n| {
                n.strip_suffix("data.pkl")
                    .is_some_and(|p| p.ends_with('/') && p.matches('/').count() == 1)
            })
            .map(|n| n.to_string())
            .collect();
        let pickle_name =
            match &pickles[..] {
                [one] => one.clone(),
                [] => return Err(DataError::format(
                    path,
                    FORMAT,
                    "the zip archive has no <folder>/data.pkl member (not written by torch.save)",
                )),
                _ => {
                    return Err(DataError::format(
                        path,
                        FORMAT,
                        format!(
                            "the zip archive has several data.pkl members ({})",
                            pickles.join(", ")
                        ),
                    ))
                }
            };
        let prefix = pickle_name[..pickle_name.len() - "data.pkl".len()].to_string();
        if let Ok(mut member) = archive.by_name(&format!("{prefix}byteorder")) {
            let mut order = String::new();
            member
                .by_ref()
                .take(16)
                .read_to_string(&mut order)
                .map_err(|e| {
                    DataError::format(path, FORMAT, format!("member 'byteorder' is corrupt: {e}"))
                })?;
            if order.trim() != "little" {
                return Err(DataError::format(
                    path,
                    FORMAT,
                    format!(
                        "the tensors are stored in '{}' byte order; only little-endian files are read",
                        order.trim()
                    ),
                ));
            }
        }
        let pickle = {
            let mut member = archive
                .by_name(&pickle_name)
                .map_err(|e| zip_error(path, &format!("member '{pickle_name}'"), e))?;
            let size = member.size();
            let limit = crate::limits::max_memory();
            if size > limit {
                return Err(DataError::TooLarge {
                    path: path.to_path_buf(),
                    what: format!("member '{pickle_name}'"),
                    bytes: size,
                    limit,
                });
            }
            let mut bytes = Vec::with_capacity(size as usize);
            member.read_to_end(&mut bytes).map_err(|e| {
                DataError::format(
                    path,
                    FORMAT,
                    format!("member '{pickle_name}' is corrupt: {e}"),
                )
            })?;
            bytes
        };
        let mut unpickler = Unpickler::new(&pickle);
        let refused =
            |reason: Refusal| DataError::format(path, FORMAT, format!("{pickle_name}: {reason}"));
        let root = unpickler.run().map_err(refused)?;
        let nodes = std::mem::take(&mut unpickler.nodes);
        let mut leaves = Vec::new();
        match &nodes[root] {
            Node::Dict(_) | Node::List(_) | Node::Tuple(_) => {
                flatten(&nodes, root, "", 0, &mut leaves).map_err(refused)?
            }
            other => {
                return Err(DataError::format(
                    path,
                    FORMAT,
                    format!(
                        "the file holds {}, expected a dict of tensors (e.g. torch.save({{'features': F, 'labels': y}}, path))",
                        other.kind()
                    ),
                ))
            }
        }
        let names = leaves
            .iter()
            .filter(|(_, leaf)| matches!(leaf, Leaf::Tensor(_)))
            .map(|(name, _)| name.clone())
            .collect();
        Ok(TorchReader {
            path: path.to_path_buf(),
            archive,
            prefix,
            leaves,
            names,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dotted paths of the tensors, in the order they were saved.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The tensors' names for a message: the first few, and how many more there are.
    pub fn listed_names(&self) -> String {
        if self.names.len() <= LISTED_NAMES {
            return list_or_none(&self.names);
        }
        format!(
            "{}, ... ({} more tensors)",
            self.names[..LISTED_NAMES].join(", "),
            self.names.len() - LISTED_NAMES
        )
    }

    /// Whether `key` names a value of the file (a tensor or not), in full or below wrapper
    /// containers.
    /// An ambiguous name counts as present, so that reading it reports the ambiguity.
    pub fn contains(&self, key: &str) -> bool {
        !matches!(self.resolve(key), Ok(None))
    }

    /// The leaf `key` names: in full, else below wrapper containers, where exactly one
    /// must match.
    fn resolve(&self, key: &str) -> Result<Option<&(String, Leaf)>> {
        if let Some(leaf) = self.leaves.iter().find(|(name, _)| name == key) {
            return Ok(Some(leaf));
        }
        let below: Vec<&(String, Leaf)> = self
            .leaves
            .iter()
            .filter(|(name, _)| {
                name.strip_suffix(key)
                    .and_then(|p| p.strip_suffix('.'))
                    .is_some_and(|p| p.split('.').all(|part| WRAPPER_KEYS.contains(&part)))
            })
            .collect();
        match below[..] {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(DataError::array(
                &self.path,
                key,
                format!(
                    "is ambiguous: the file holds {}; name one in full",
                    below
                        .iter()
                        .map(|(n, _)| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            )),
        }
    }

    fn tensor(&self, key: &str) -> Result<TensorRef> {
        match self.resolve(key)? {
            None => Err(DataError::MissingArray {
                path: self.path.clone(),
                key: key.to_string(),
                available: self.listed_names(),
            }),
            Some((_, Leaf::Other(kind))) => Err(DataError::array(
                &self.path,
                key,
                format!("is {kind}, not a tensor"),
            )),
            Some((_, Leaf::Tensor(t))) => Ok(t.clone()),
        }
    }

    /// Checks the tensor against its storage and the memory ceiling; returns its element
    /// count and the storage member's name.
    fn check(&mut self, key: &str, t: &TensorRef) -> Result<(usize, String)> {
        let path = &self.path;
        let count = t.count().ok_or_else(|| {
            DataError::array(
                path,
                key,
                format!("has size {} that overflows", shape_string(&t.shape)),
            )
        })?;
        let extent = t.extent().ok_or_else(|| {
            DataError::array(path, key, "has a storage offset and stride that overflow")
        })?;
        if extent as u64 > t.storage_numel {
            return Err(DataError::format(
                path,
                FORMAT,
                format!(
                    "tensor '{key}' (size {}, offset {}, stride {:?}) reaches element {} of a storage of {} (corrupt file)",
                    shape_string(&t.shape),
                    t.offset,
                    t.stride,
                    extent,
                    t.storage_numel
                ),
            ));
        }
        let member = format!("{}data/{}", self.prefix, t.storage);
        let size = self
            .archive
            .by_name(&member)
            .map_err(|e| {
                zip_error(
                    path,
                    &format!("the data of tensor '{key}' (member '{member}')"),
                    e,
                )
            })?
            .size();
        let needed = t.storage_numel.saturating_mul(t.dtype.size() as u64);
        if size < needed {
            return Err(DataError::format(
                path,
                FORMAT,
                format!(
                    "member '{member}' has {size} bytes, but its storage of {} {} elements needs {needed} (truncated or corrupt)",
                    t.storage_numel,
                    t.dtype.name()
                ),
            ));
        }
        let out_size = match t.dtype {
            TorchDType::F16 | TorchDType::BF16 => 4,
            d => d.size() as u64,
        };
        let bytes = (count as u64).saturating_mul(out_size);
        let read = if t.is_contiguous() { 0 } else { needed };
        let limit = crate::limits::max_memory();
        if bytes.saturating_add(read) > limit {
            return Err(DataError::TooLarge {
                path: path.clone(),
                what: format!("tensor '{key}'"),
                bytes: bytes.saturating_add(read),
                limit,
            });
        }
        Ok((count, member))
    }

    /// Reads the tensor `key` into a C-order array (float16 and bfloat16 widened to float32).
    pub fn read(&mut self, key: &str) -> Result<NpyArray> {
        let t = self.tensor(key)?;
        let (count, member) = self.check(key, &t)?;
        let path = self.path.clone();
        let corrupt = |e: io::Error| {
            DataError::format(&path, FORMAT, format!("member '{member}' is corrupt: {e}"))
        };
        let es = t.dtype.size();
        let mut file = self
            .archive
            .by_name(&member)
            .map_err(|e| zip_error(&path, &format!("member '{member}'"), e))?;
        // The storage bytes the tensor uses, in C order; the whole member is read through so
        // that the zip reader checks its CRC-32.
        let bytes = if t.is_contiguous() {
            io::copy(
                &mut file.by_ref().take((t.offset * es) as u64),
                &mut io::sink(),
            )
            .map_err(corrupt)?;
            let mut bytes = vec![0u8; count * es];
            file.read_exact(&mut bytes).map_err(corrupt)?;
            bytes
        } else {
            let mut storage = vec![0u8; t.storage_numel as usize * es];
            file.read_exact(&mut storage).map_err(corrupt)?;
            gather(&t, &storage, count)
        };
        io::copy(&mut file, &mut io::sink()).map_err(corrupt)?;
        drop(file);
        let data = decode(t.dtype, &bytes)
            .map_err(|e| DataError::array(&self.path, key, format!("has invalid data: {e}")))?;
        NpyArray::new(t.shape.clone(), data).map_err(|e| DataError::array(&self.path, key, e))
    }

    /// The float32/float64 tensor `key` in place, when it is contiguous in a stored member,
    /// after checking the member's CRC-32; `Ok(None)` otherwise (including when it is
    /// missing), which [`TorchReader::read`] then reads or reports.
    pub fn map_floats(&mut self, key: &str) -> Result<Option<(Vec<usize>, MappedFloats)>> {
        let Ok(t) = self.tensor(key) else {
            return Ok(None);
        };
        let (Some(dtype @ (DType::F32 | DType::F64)), true) = (t.dtype.stored(), t.is_contiguous())
        else {
            return Ok(None);
        };
        let (count, member) = self.check(key, &t)?;
        let path = &self.path;
        let (start, size, crc) = {
            let file = self
                .archive
                .by_name(&member)
                .map_err(|e| zip_error(path, &format!("member '{member}'"), e))?;
            if file.compression() != CompressionMethod::Stored
                || file.encrypted()
                || file.compressed_size() != file.size()
            {
                return Ok(None);
            }
            match file.data_start() {
                Some(start) => (start, file.size(), file.crc32()),
                None => return Ok(None),
            }
        };
        let (Ok(start), Ok(size)) = (usize::try_from(start), usize::try_from(size)) else {
            return Ok(None);
        };
        let Some(map) = crate::io::open_regular(path, "a PyTorch .pt file")
            .ok()
            .as_ref()
            .and_then(map_file)
        else {
            return Ok(None);
        };
        if start.checked_add(size).is_none_or(|end| end > map.len()) {
            return Ok(None);
        }
        let Some(mapped) =
            MappedFloats::new(map.clone(), start + t.offset * dtype.size(), count, dtype)
        else {
            return Ok(None);
        };
        if crc32(&map[start..start + size]) != crc {
            return Err(DataError::format(
                path,
                FORMAT,
                format!(
                    "member '{member}' is corrupt: its data fail the archive's CRC-32 checksum"
                ),
            ));
        }
        Ok(Some((t.shape.clone(), mapped)))
    }

    /// Reads every tensor of the file.
    pub fn read_all(&mut self) -> Result<BTreeMap<String, NpyArray>> {
        let names = self.names.clone();
        names
            .into_iter()
            .map(|name| self.read(&name).map(|a| (name, a)))
            .collect()
    }
}

fn read_up_to(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buffer.len() {
        match file.read(&mut buffer[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// The elements of a strided tensor, in C order, from its storage's bytes (checked to hold
/// every element the tensor touches).
fn gather(t: &TensorRef, storage: &[u8], count: usize) -> Vec<u8> {
    let es = t.dtype.size();
    let mut out = Vec::with_capacity(count * es);
    if count == 0 {
        return out;
    }
    let ndim = t.shape.len();
    let mut index = vec![0usize; ndim];
    let mut at = t.offset;
    loop {
        out.extend_from_slice(&storage[at * es..(at + 1) * es]);
        let mut axis = ndim;
        loop {
            if axis == 0 {
                return out;
            }
            axis -= 1;
            index[axis] += 1;
            at += t.stride[axis];
            if index[axis] < t.shape[axis] {
                break;
            }
            at -= t.stride[axis] * t.shape[axis];
            index[axis] = 0;
        }
    }
}

/// Decodes little-endian elements; float16 and bfloat16 are widened exactly to float32.
fn decode(dtype: TorchDType, bytes: &[u8]) -> io::Result<ArrayData> {
    match dtype {
        TorchDType::F16 => Ok(ArrayData::F32(
            bytes
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        )),
        TorchDType::BF16 => Ok(ArrayData::F32(
            bytes
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
        )),
        other => {
            let dtype = other.stored().expect("every other dtype is stored as is");
            read_elements(&mut &bytes[..], dtype, bytes.len() / dtype.size())
        }
    }
}

/// IEEE half precision to single precision, exactly (every half value is a float).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    match exponent {
        0 => {
            // Zero or subnormal: mantissa x 2^-24, exact in f32.
            let magnitude = mantissa as f32 * f32::from_bits(0x3380_0000);
            if sign != 0 {
                -magnitude
            } else {
                magnitude
            }
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (mantissa << 13)),
        _ => f32::from_bits(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13)),
    }
}

/// Reads every tensor of the `torch.save` file `path`, keyed by dotted path.
pub fn read_torch(path: &Path) -> Result<BTreeMap<String, NpyArray>> {
    TorchReader::open(path)?.read_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_widens_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn strided_tensors_are_gathered_in_c_order() {
        // Storage 0..12 as a 3x4 matrix; its transpose (4x3, strides (1, 4)) from offset 0,
        // and the 2x2 block at rows 1.., columns 1.. (offset 5, strides (4, 1)).
        let storage: Vec<u8> = (0..12).collect();
        let t = TensorRef {
            storage: "0".into(),
            dtype: TorchDType::U8,
            storage_numel: 12,
            offset: 0,
            shape: vec![4, 3],
            stride: vec![1, 4],
        };
        assert!(!t.is_contiguous());
        assert_eq!(t.extent(), Some(12));
        assert_eq!(
            gather(&t, &storage, 12),
            [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
        );
        let block = TensorRef {
            offset: 5,
            shape: vec![2, 2],
            stride: vec![4, 1],
            ..t.clone()
        };
        assert_eq!(block.extent(), Some(11));
        assert_eq!(gather(&block, &storage, 4), [5, 6, 9, 10]);
        let row = TensorRef {
            offset: 4,
            shape: vec![1, 4],
            stride: vec![99, 1],
            ..t
        };
        assert!(row.is_contiguous());
    }

    fn unpickle(bytes: &[u8]) -> std::result::Result<Vec<(String, Leaf)>, Refusal> {
        let mut u = Unpickler::new(bytes);
        let root = u.run()?;
        let mut out = Vec::new();
        flatten(&u.nodes, root, "", 0, &mut out)?;
        Ok(out)
    }

    #[test]
    fn plain_containers_unpickle_and_classes_are_refused() {
        // pickle.dumps({'a': [1, 'x'], 'b': (None, True, 2.5)}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01X\x01\x00\x00\x00xq\x03eX\x01\x00\x00\x00bq\x04N\x88G@\x04\x00\x00\x00\x00\x00\x00\x87q\x05u.";
        let leaves = unpickle(bytes).unwrap();
        let names: Vec<&str> = leaves.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "a.0", "a.1", "b", "b.0", "b.1", "b.2"]);
        // pickle.dumps(os.system, protocol=2): refused at the global, naming it.
        let bytes = b"\x80\x02cposix\nsystem\nq\x00.";
        let err = unpickle(bytes).unwrap_err();
        assert!(err.contains("'posix.system'"), "{err}");
        // Every truncation of a valid pickle is refused, never a panic.
        let full = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01X\x01\x00\x00\x00xq\x03eu.";
        for n in 0..full.len() {
            assert!(unpickle(&full[..n]).is_err(), "{n}");
        }
    }
}
