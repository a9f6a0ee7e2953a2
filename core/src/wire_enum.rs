//! `wire_enum!`: a closed set of names that travel on the wire (`vm.create`, `noop`, ...).
//!
//! One declaration gives the enum (serde renames, JSON Schema), `ALL`, `as_str`, `parse` and
//! `Display`, so a wire name is written exactly once. Used by the job kinds, the agent
//! operations and the step names.

/// Declares a wire enum: `Variant = "wire.name",` per variant, each with its doc comment.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Name:ident {
            $( $(#[$vmeta:meta])* $Variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            serde::Serialize, serde::Deserialize, schemars::JsonSchema,
        )]
        $vis enum $Name {
            $( $(#[$vmeta])* #[serde(rename = $wire)] $Variant, )+
        }

        impl $Name {
            /// Every value, in declaration order.
            pub const ALL: [$Name; [$($wire),+].len()] = [$($Name::$Variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $Name::$Variant => $wire, )+
                }
            }

            /// Parses a wire name.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $Name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
