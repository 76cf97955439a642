//! Request bodies arrive in time: every request's body (a JSON body, a multipart upload, a
//! sign-in form) must be read within `http.body_timeout_s` of its headers. actix-web times
//! out the headers itself (`client_request_timeout`), not a body trickling in a byte at a
//! time. One middleware wraps the payload of every request; when the deadline passes while
//! a handler waits for more of it, the read fails, and whatever the handler made of that
//! failure is replaced by 408 in the one error shape, with the connection closed.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use futures_util::Stream;

use super::error::ApiError;
use super::State;
use crate::error::Error;

/// A request payload that fails once `sleep` has elapsed, noting it in `expired`.
struct Deadline {
    inner: Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: Rc<Cell<bool>>,
    done: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let timed_out = |this: &mut Deadline| -> Poll<Option<Self::Item>> {
            this.expired.set(true);
            this.done = true;
            Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body did not arrive in time")))))
        };
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            // a body arriving slowly but steadily is cut at the deadline too
            Poll::Ready(Some(Ok(_))) if this.sleep.is_elapsed() => timed_out(this),
            Poll::Ready(item) => Poll::Ready(item),
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => timed_out(this),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// The middleware: the payload under a deadline; 408 (connection closed) when it passed.
pub async fn bodies_in_time<B: MessageBody>(mut req: ServiceRequest, next: Next<B>) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let seconds = req.app_data::<web::Data<State>>().map(|s| s.ctx.config.http.body_timeout_s).unwrap_or(60);
    let expired = Rc::new(Cell::new(false));
    let inner = req.parts_mut().1.take();
    let deadline = Deadline { inner, sleep: Box::pin(tokio::time::sleep(Duration::from_secs(seconds))), expired: expired.clone(), done: false };
    let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(deadline);
    req.set_payload(Payload::from(boxed));
    let res = next.call(req).await;
    if !expired.get() {
        return res.map(ServiceResponse::map_into_left_body);
    }
    let error = ApiError(Error::BodyTimeout(format!("the request body did not arrive within {seconds} s (http.body_timeout_s)")));
    // (a request cannot be cloned before routing: without the handler's response, the
    // timeout is answered as an error)
    let req = match res {
        Ok(r) => r.into_parts().0,
        Err(_) => return Err(error.into()),
    };
    let mut response = actix_web::ResponseError::error_response(&error);
    response.head_mut().set_connection_type(ConnectionType::Close);
    Ok(ServiceResponse::new(req, response).map_into_right_body())
}
