//! `TokenFormat::parse` / `check_shape` / `is_well_formed` and `TokenId::from_str`
//! on arbitrary input, against an independent reading of the format; plus a
//! round trip of tokens built from the input, and one-character changes to them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tokengate_fuzz::token_text(data);
    tokengate_fuzz::token_round_trip(data);
});
