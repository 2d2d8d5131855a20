//! The typed option spec: one source of truth for a module's options.
//!
//! A module declares its options once, as a `static` [`ModuleSpec`]. The same value drives
//! argument validation and coercion ([`crate::params`]), the `--help` text and the ansible-doc
//! sidecar YAML ([`crate::docs`]), so the documentation can never drift from the code.

/// The type of an option, named as Ansible's argument spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text. Numbers are converted to text; booleans are refused (see [`crate::coerce`]).
    Str,
    /// `yes/no/true/false/on/off/1/0/y/n/t/f` in any case, or a JSON boolean.
    Bool,
    /// A whole number; text such as `"3"` is converted.
    Int,
    /// A number; text such as `"0.5"` is converted.
    Float,
    /// Text with `~` and `$VAR` expanded, as Ansible's `path` type does.
    Path,
    /// A file mode: an integer of permission bits or an octal string such as `"0644"`.
    Mode,
    /// A list; `"a,b"` becomes `["a", "b"]`. The element type is [`OptionSpec::elements`].
    List,
    /// A mapping; its keys are [`OptionSpec::suboptions`].
    Dict,
    /// Any JSON value, passed through untouched.
    Raw,
}

impl Kind {
    /// The name ansible-doc uses for this type.
    pub const fn ansible_name(self) -> &'static str {
        match self {
            Kind::Str => "str",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::Path => "path",
            Kind::Mode | Kind::Raw => "raw",
            Kind::List => "list",
            Kind::Dict => "dict",
        }
    }
}

/// A default value, written so that a spec can be a `static`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    Str(&'static str),
    Bool(bool),
    Int(i64),
    /// An empty list.
    EmptyList,
}

impl DefaultValue {
    pub fn to_json(self) -> serde_json::Value {
        match self {
            DefaultValue::Str(s) => serde_json::Value::from(s),
            DefaultValue::Bool(b) => serde_json::Value::from(b),
            DefaultValue::Int(i) => serde_json::Value::from(i),
            DefaultValue::EmptyList => serde_json::Value::Array(Vec::new()),
        }
    }
}

/// One option of a module (or a sub-option of a `dict` / `list` of `dict` option).
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: Kind,
    /// Element type of a `list` option.
    pub elements: Option<Kind>,
    /// Keys of a `dict` option, or of each element of a `list` of `dict`.
    pub suboptions: &'static [OptionSpec],
    pub required: bool,
    pub default: Option<DefaultValue>,
    pub choices: &'static [&'static str],
    /// Inclusive bounds of an `int` option (or of each element of a `list` of `int`).
    pub range: Option<(i64, i64)>,
    /// A secret: masked in the result's `invocation`, scrubbed from every other output.
    pub no_log: bool,
    /// One paragraph per entry, as ansible-doc renders them.
    pub description: &'static [&'static str],
}

impl OptionSpec {
    /// A new optional option of `kind` with no default.
    pub const fn new(name: &'static str, kind: Kind) -> Self {
        OptionSpec {
            name,
            kind,
            elements: None,
            suboptions: &[],
            required: false,
            default: None,
            choices: &[],
            range: None,
            no_log: false,
            description: &[],
        }
    }
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub const fn default(mut self, value: DefaultValue) -> Self {
        self.default = Some(value);
        self
    }
    pub const fn elements(mut self, kind: Kind) -> Self {
        self.elements = Some(kind);
        self
    }
    pub const fn suboptions(mut self, options: &'static [OptionSpec]) -> Self {
        self.suboptions = options;
        self
    }
    pub const fn choices(mut self, choices: &'static [&'static str]) -> Self {
        self.choices = choices;
        self
    }
    pub const fn range(mut self, min: i64, max: i64) -> Self {
        self.range = Some((min, max));
        self
    }
    pub const fn no_log(mut self) -> Self {
        self.no_log = true;
        self
    }
    pub const fn doc(mut self, description: &'static [&'static str]) -> Self {
        self.description = description;
        self
    }
}

/// One documented key of the module's result.
#[derive(Debug, Clone, Copy)]
pub struct ReturnSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// When it is returned, in ansible-doc's words (`always`, `changed`, `success`, …).
    pub returned: &'static str,
    pub kind: &'static str,
    /// A sample value, as JSON text.
    pub sample: Option<&'static str>,
}

/// `requires` must be given when option `option` has value `value` (Ansible's `required_if`).
#[derive(Debug, Clone, Copy)]
pub struct RequiredIf {
    pub option: &'static str,
    pub value: &'static str,
    pub requires: &'static [&'static str],
}

/// Everything known about a module: its options, its documentation, its result keys.
#[derive(Debug, Clone, Copy)]
pub struct ModuleSpec {
    pub name: &'static str,
    pub short_description: &'static str,
    pub description: &'static [&'static str],
    pub options: &'static [OptionSpec],
    pub required_if: &'static [RequiredIf],
    pub notes: &'static [&'static str],
    /// YAML text of example tasks.
    pub examples: &'static str,
    pub returns: &'static [ReturnSpec],
}

impl ModuleSpec {
    /// The Ansible collection every module belongs to.
    pub const COLLECTION: &'static str = "z3r0d3v.matrix_ha";

    pub fn fqcn(&self) -> String {
        format!("{}.{}", Self::COLLECTION, self.name)
    }
}

/// Names of `options`, sorted, for "valid options are …" messages.
pub(crate) fn sorted_names(options: &[OptionSpec]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = options.iter().map(|o| o.name).collect();
    names.sort_unstable();
    names
}
