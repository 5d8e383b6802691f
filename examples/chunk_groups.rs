//! How big a chunk group should be: the CPU cost of bao-tree's outboard,
//! encoding and checked decoding per group size, as a ratio to plain
//! BLAKE3 over the same bytes (the cost any verified transfer pays anyway),
//! with the outboard's size. Medians of 5; run with
//! `cargo run --release --example chunk_groups` (or without `--release`:
//! bao-tree and blake3 are dependencies, optimised in dev builds too).
//!
//! What airhop uses: `airhop::transfer::verified::GROUP_LOG`.

use std::time::Instant;

use bao_tree::io::outboard::PostOrderMemOutboard;
use bao_tree::io::sync::{encode_ranges_validated, outboard_post_order, DecodeResponseIter};
use bao_tree::io::BaoContentItem;
use bao_tree::{BaoTree, BlockSize, ChunkRanges};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn main() {
    let size: usize = 128 << 20;
    let mut data = vec![0u8; size];
    blake3::Hasher::new().finalize_xof().fill(&mut data);
    let runs = 5;
    let base = median(
        (0..runs)
            .map(|_| {
                time(|| {
                    std::hint::black_box(blake3::hash(&data));
                })
            })
            .collect(),
    );
    println!(
        "{} MiB, medians of {runs}; plain BLAKE3 (one core): {:.0} MB/s",
        size >> 20,
        size as f64 / base / 1e6
    );
    println!("group     outboard   outboard/BLAKE3  encode/BLAKE3  decode/BLAKE3");
    for log in [0u8, 2, 3, 4, 5, 6, 8] {
        let bs = BlockSize::from_chunk_log(log);
        let tree = BaoTree::new(size as u64, bs);
        let ob_time = median(
            (0..runs)
                .map(|_| {
                    let mut ob = Vec::new();
                    time(|| {
                        outboard_post_order(&data[..], tree, &mut ob).unwrap();
                    })
                })
                .collect(),
        );
        let ob = PostOrderMemOutboard::create(&data, bs);
        let all = ChunkRanges::all();
        let mut encoded = Vec::with_capacity(size + size / 64);
        let enc_time = median(
            (0..runs)
                .map(|_| {
                    encoded.clear();
                    time(|| encode_ranges_validated(&data[..], &ob, &all, &mut encoded).unwrap())
                })
                .collect(),
        );
        let root = ob.root;
        let dec_time = median(
            (0..runs)
                .map(|_| {
                    time(|| {
                        let mut n = 0usize;
                        for item in DecodeResponseIter::new(root, tree, &encoded[..], &all) {
                            if let BaoContentItem::Leaf(l) = item.unwrap() {
                                n += l.data.len();
                            }
                        }
                        assert_eq!(n, size);
                    })
                })
                .collect(),
        );
        println!(
            "{:>5} KiB {:>7} KiB   {:>13.2}x  {:>12.2}x  {:>12.2}x",
            1u64 << log,
            ob.data.len() >> 10,
            ob_time / base,
            enc_time / base,
            dec_time / base
        );
    }
}
