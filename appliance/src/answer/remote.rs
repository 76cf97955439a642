//! An OpenAI-compatible inference host on the customer's network (mistralrs-server, vLLM,
//! llama.cpp's server): `POST {endpoint}/v1/chat/completions` with `stream: true`, through
//! the egress client only. The remote tokenizer is not available here, so prompt budgets
//! count conservatively (one token per three bytes, which over-counts for English text).

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::generate::{BoxFuture, Generation, Generator, ModelInfo, TokenSink};
use super::prompt::Prompt;
use crate::config::HttpGeneratorConfig;
use crate::egress::EgressClient;
use crate::error::{Error, Result};

pub struct Remote {
    egress: Arc<EgressClient>,
    url: String,
    model: String,
    token: Option<String>,
    info: ModelInfo,
    context: usize,
}

impl Remote {
    pub fn new(config: &HttpGeneratorConfig, egress: Arc<EgressClient>) -> Result<Remote> {
        let url = format!("{}/v1/chat/completions", config.endpoint.trim_end_matches('/'));
        // refuse at start, not on the first question
        egress.check(&url, "answer generation (answer.backend = \"http\")", &policies::Content::default())?;
        let token = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| Error::Config(format!("answer.http.api_key_env: {var} is not set")))?),
            None => None,
        };
        Ok(Remote {
            egress,
            url,
            model: config.model.clone(),
            token,
            info: ModelInfo { model: config.model.clone(), adapter: None, backend: "http", architecture: None },
            context: config.context_tokens,
        })
    }
}

/// The text and usage carried by one `data:` line of the stream, or `None` at `[DONE]`.
fn parse_event(data: &str, url: &str) -> Result<Option<(String, Option<(usize, usize)>)>> {
    if data == "[DONE]" {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(data).map_err(|e| Error::Upstream { url: url.into(), message: format!("bad stream event: {e}") })?;
    let text = v["choices"][0]["delta"]["content"].as_str().unwrap_or_default().to_string();
    let usage = v["usage"]["prompt_tokens"].as_u64().zip(v["usage"]["completion_tokens"].as_u64()).map(|(p, c)| (p as usize, c as usize));
    Ok(Some((text, usage)))
}

impl Generator for Remote {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn context_tokens(&self) -> usize {
        self.context
    }

    fn count_tokens<'a>(&'a self, texts: Vec<String>) -> BoxFuture<'a, Result<Vec<usize>>> {
        Box::pin(async move { Ok(texts.iter().map(|t| t.len().div_ceil(3)).collect()) })
    }

    fn generate<'a>(&'a self, prompt: &'a Prompt, max_tokens: usize, sink: TokenSink<'a>) -> BoxFuture<'a, Result<Generation>> {
        Box::pin(async move {
            let body = json!({
                "model": self.model,
                "messages": [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": true,
                "stream_options": {"include_usage": true},
            });
            let started = Instant::now();
            let response = self.egress.post_json(&self.url, "answer generation", &prompt.content, self.token.as_deref(), &body).await?;
            let mut out = Generation::default();
            let mut first: Option<f64> = None;
            let mut buffer = Vec::<u8>::new();
            let mut stream = response.bytes_stream();
            'read: while let Some(bytes) = stream.next().await {
                let bytes = bytes.map_err(|e| Error::Upstream { url: self.url.clone(), message: format!("stream broken: {e}") })?;
                buffer.extend_from_slice(&bytes);
                while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&line);
                    let Some(data) = line.trim().strip_prefix("data:") else { continue };
                    match parse_event(data.trim(), &self.url)? {
                        None => break 'read,
                        Some((text, usage)) => {
                            if !text.is_empty() {
                                first.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1000.0);
                                out.text.push_str(&text);
                                sink(&text);
                            }
                            if let Some((p, c)) = usage {
                                out.prompt_tokens = p;
                                out.completion_tokens = c;
                            }
                        }
                    }
                }
            }
            out.total_ms = started.elapsed().as_secs_f64() * 1000.0;
            out.time_to_first_token_ms = first.unwrap_or(out.total_ms);
            let decode_ms = out.total_ms - out.time_to_first_token_ms;
            if out.completion_tokens > 1 && decode_ms > 0.0 {
                out.decode_tokens_per_s = (out.completion_tokens - 1) as f64 / (decode_ms / 1000.0);
            }
            if out.prompt_tokens > 0 {
                out.prefill_tokens_per_s = out.prompt_tokens as f64 / (out.time_to_first_token_ms / 1000.0).max(1e-9);
            }
            out.truncated = out.completion_tokens >= max_tokens;
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_events() {
        let (t, u) = parse_event(r#"{"choices":[{"delta":{"content":"Two [1]"}}]}"#, "u").unwrap().unwrap();
        assert_eq!((t.as_str(), u), ("Two [1]", None));
        let (t, u) = parse_event(r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3}}"#, "u").unwrap().unwrap();
        assert_eq!((t.as_str(), u), ("", Some((9, 3))));
        assert!(parse_event("[DONE]", "u").unwrap().is_none());
        assert_eq!(parse_event("{nope", "u").unwrap_err().code(), "upstream_error");
    }
}
