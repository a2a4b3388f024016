//! Cartonization properties on random shipments: every packing is physically valid (inside
//! the box, no overlaps, weight within limits, every unit once) and never beats the lower bound.

use conductor_engine::fulfilment::cartonization::{
    cartonize, check_packing, BoxType, CartonizationError, Dims, PackItem,
};
use conductor_engine::ids::SkuId;
use proptest::prelude::*;

fn boxes() -> Vec<BoxType> {
    let spec = |name: &str, l, w, h, kg: u32| BoxType {
        name: name.into(),
        inner: Dims::new(l, w, h),
        max_weight_g: kg * 1000,
    };
    vec![
        spec("XS", 150, 100, 80, 5),
        spec("S", 250, 200, 120, 10),
        spec("M", 350, 250, 200, 15),
        spec("L", 450, 350, 300, 20),
        spec("XL", 600, 400, 400, 25),
    ]
}

fn items() -> impl Strategy<Value = Vec<PackItem>> {
    let item = (
        20u32..=400,
        20u32..=300,
        10u32..=250,
        10u32..=6_000,
        1u32..=4,
        any::<bool>(),
    )
        .prop_map(|(l, w, h, weight_g, qty, keep_upright)| PackItem {
            sku: SkuId(0),
            dims: Dims::new(l, w, h),
            weight_g,
            qty,
            keep_upright,
        });
    prop::collection::vec(item, 0..=8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn packings_are_physically_valid(items in items()) {
        match cartonize(&boxes(), &items) {
            Ok(packing) => {
                prop_assert_eq!(check_packing(&boxes(), &items, &packing), Ok(()));
                prop_assert!(packing.cartons.len() >= packing.lower_bound);
                prop_assert!(packing.fill_rate <= 1.0);
            }
            // Only an item too big or too heavy for every box may be refused.
            Err(CartonizationError::FitsNoBox(_)) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }
}
