//! `text_enum!`: an enum stored as text, one place for its names. It derives the GraphQL enum and
//! gives `as_str`, `Display`, and a `FromStr` whose failure is an internal error (an unknown name can
//! only come from the database).

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, async_graphql::Enum)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::error::Error;
            fn from_str(s: &str) -> ::std::result::Result<Self, $crate::error::Error> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::error::Error::Internal(format!("unknown {} `{other}` in the database", stringify!($name)))),
                }
            }
        }
    };
}

pub(crate) use text_enum;
