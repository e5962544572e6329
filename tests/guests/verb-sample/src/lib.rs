//! Test guest for the verb world: implements `sample:answer`, `sample:echo`, `sample:recurse` (which runs
//! itself, for the nesting limit), `sample:hoard` (which holds memory while it runs a verb, for the call's
//! memory budget), `sample:dial` (which leaves the call it places up) and `sample:report` (which posts this module's version to a hook). `verb-sample-v2` is the same module with another version, to
//! replace this one while calls run.

const VERSION: u32 = 1;

include!("sample.rs");
