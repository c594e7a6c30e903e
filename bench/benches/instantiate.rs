//! Instantiation cost per request, with criterion: what a fresh instance of
//! a loaded service costs the host (an instance slot, a store with the
//! service's sandbox and limits, instantiation from the pool), for the real
//! hello components in Rust, JavaScript and Python.
//!
//! `cargo bench -p locker-bench --bench instantiate`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use locker::package::Package;
use locker::store::LockerRoot;
use locker::supervisor::{HostOptions, Supervisor};
use locker_bench::guest;

fn fresh_instance(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let supervisor = runtime.block_on(async {
        let root = LockerRoot::open(dir.path().join("root")).unwrap();
        let supervisor =
            tokio::task::block_in_place(|| Supervisor::new(root, HostOptions::default())).unwrap();
        for name in ["hello-rs", "hello-js", "hello-py"] {
            let package = Package::read(&guest(name), None).unwrap();
            supervisor.install(package).await.unwrap();
        }
        supervisor
    });
    let mut group = c.benchmark_group("fresh instance");
    for name in ["hello-rs", "hello-js", "hello-py"] {
        let service = supervisor.service(name).unwrap();
        let loaded = runtime.block_on(service.loaded()).unwrap();
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                let _claim = loaded.admit(&service.settings, deadline).await.unwrap();
                let (mut store, _) = loaded
                    .new_store(service.engine(), &service.settings)
                    .unwrap();
                let instance = loaded.pre.instantiate_async(&mut store).await.unwrap();
                black_box(instance);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fresh_instance);
criterion_main!(benches);
