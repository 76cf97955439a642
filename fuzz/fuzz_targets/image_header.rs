//! The headers of scans (PNG, JPEG, TIFF with its chain of page directories), read before
//! anything is given to Tesseract: the page count and each page's size decide whether the
//! file is refused. Reading them must never panic, loop or read outside the input, and
//! what it reports must respect the page limit it was given.
#![no_main]

use ingest::parse::ocr::{check, image_info, OcrSettings};
use libfuzzer_sys::fuzz_target;
use sanctum_fuzz::guarded;

fuzz_target!(init: sanctum_fuzz::init(), |data: &[u8]| {
    guarded(|| {
        if let Ok(info) = image_info(data, 64) {
            assert!(!info.pages.is_empty() && info.pages.len() <= 64, "{} pages reported", info.pages.len());
            let _ = check(&info, &OcrSettings::default());
        }
    });
});
