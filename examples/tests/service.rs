//! The `service` example: an actix-web application embedding one runtime answers
//! concurrent `POST /predict` requests through its fitted pipeline.

use ndarray::Axis;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, request};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// 16 clients at once, 10 flowers each: every answer names its own samples, and
/// the predictions are right for at least 90% of them; a malformed sample gets a
/// 400 that says why.
#[test]
fn the_service_answers_concurrent_predict_requests() {
    serve_and_check("inprocess");
}

/// The same with the pipeline on worker processes of the service's own binary,
/// whose `main` is async: a worker started from it runs (it once panicked there).
#[test]
fn the_async_service_runs_its_pipeline_on_worker_processes() {
    serve_and_check("processes");
}

fn serve_and_check(mode: &str) {
    let addr = format!("127.0.0.1:{}", free_port());
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_service"))
            .args(["--bind", &addr, "--dashboard", "off", "--mode", mode])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while request(&addr, "GET", "/health", "").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "the service never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let iris = linfa_datasets::iris();
    let flowers: Vec<(String, Vec<f64>, f64)> = iris
        .records()
        .axis_iter(Axis(0))
        .zip(iris.targets().iter())
        .enumerate()
        .map(|(i, (x, y))| (format!("f{i}"), x.to_vec(), *y as f64))
        .collect();
    let answers: Vec<(Vec<(String, f64)>, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|c| {
                let (addr, flowers) = (&addr, &flowers);
                s.spawn(move || {
                    let mine: Vec<(String, f64)> = (0..10)
                        .map(|k| {
                            let f = &flowers[(c * 10 + k) % flowers.len()];
                            (f.0.clone(), f.2)
                        })
                        .collect();
                    let samples: Vec<serde_json::Value> = (0..10)
                        .map(|k| {
                            let f = &flowers[(c * 10 + k) % flowers.len()];
                            serde_json::json!({"key": f.0, "data": f.1})
                        })
                        .collect();
                    let body = serde_json::json!({ "samples": samples }).to_string();
                    let (code, text) = request(addr, "POST", "/predict", &body).expect("answer");
                    assert_eq!(code, 200, "{text}");
                    (mine, serde_json::from_str(&text).expect("JSON answer"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (mut right, mut total) = (0, 0);
    for (mine, answer) in answers {
        let predictions = answer["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), mine.len());
        for ((key, label), p) in mine.iter().zip(predictions) {
            assert_eq!(p["key"], key.as_str(), "answers keep the request's order");
            total += 1;
            if p["class"].as_f64() == Some(*label) {
                right += 1;
            }
        }
    }
    assert!(right * 10 >= total * 9, "{right} of {total} right");
    let (code, text) = request(
        &addr,
        "POST",
        "/predict",
        r#"{"samples":[{"key":"short","data":[1.0,2.0]}]}"#,
    )
    .unwrap();
    assert_eq!(code, 400);
    assert!(
        text.contains("short") && text.contains("4 features"),
        "{text}"
    );
}
