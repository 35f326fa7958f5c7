//! `tokengate::bearer::parse_bearer` (and `bearer_token` on a header map) on
//! arbitrary bytes, against an independent reading of RFC 6750: any token
//! returned is the input's token68 suffix.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tokengate_fuzz::bearer_value(data);
});
