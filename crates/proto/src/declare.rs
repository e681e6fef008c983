//! The `protocol!` macro: one table of operations in, every side of the
//! protocol out (in the spirit of Hubris's Idol).
//!
//! Each row of the table (`ops.rs`) gives an operation's name, its label, its
//! snake-case name, who may call it, its request words (each `name: Codec`),
//! its reply type (a [`Message`](crate::Message)) and the statuses it may
//! refuse with. From the table come:
//!
//! - [`Op`](crate::Op): labels, names, callers, layouts and statuses;
//! - [`Request`](crate::Request): one variant per operation, with its
//!   encoder and its total decoder;
//! - [`Response`](crate::Response): one variant per operation holding its
//!   reply, with both directions;
//! - [`Api`](crate::Api): one client method per operation over any
//!   [`Transport`](crate::Transport);
//! - [`Serve`](crate::Serve) and [`dispatch`](crate::dispatch): the server's
//!   skeleton, one method per operation, with the authority check done.
//!
//! Adding an operation is a row here and a method in the server's `Serve`
//! implementation: the compiler finds every other place.

/// The protocol table. See the module documentation.
#[macro_export]
macro_rules! protocol {
    ($(
        $(#[$doc:meta])*
        $op:ident = $label:literal, $snake:ident, by $who:ident,
            request { $($field:ident : $codec:ty),* $(,)? },
            reply $reply:ty,
            refuses [$($status:ident),* $(,)?];
    )*) => {
        /// Operations: the label of a request.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u64)]
        pub enum Op { $($(#[$doc])* $op = $label,)* }

        impl Op {
            /// Every operation, in table order.
            pub const ALL: &'static [Op] = &[$(Op::$op),*];

            /// The operation a label names.
            pub fn from_label(label: u64) -> Option<Op> {
                match label {
                    $($label => Some(Op::$op),)*
                    _ => None,
                }
            }

            /// The operation's name as the README and traces spell it.
            pub fn name(self) -> &'static str {
                match self { $(Op::$op => stringify!($snake)),* }
            }

            /// Who may ask for it.
            pub fn caller(self) -> $crate::CallerKind {
                match self { $(Op::$op => $crate::CallerKind::$who),* }
            }

            /// Whether only the fault handler may ask for it.
            pub fn fault_handler_only(self) -> bool {
                self.caller() == $crate::CallerKind::FaultHandler
            }

            /// The request's registers by name, the header first.
            pub fn request_layout(self) -> &'static [&'static str] {
                match self { $(Op::$op => &["header" $(, stringify!($field))*]),* }
            }

            /// Register count of a request (header included).
            pub fn request_words(self) -> usize {
                self.request_layout().len()
            }

            /// The reply's registers by name.
            pub fn reply_layout(self) -> &'static [&'static str] {
                match self { $(Op::$op => <$reply as $crate::Message>::WORDS),* }
            }

            /// The statuses the operation itself may refuse with. Every
            /// operation may also be refused as `malformed`,
            /// `permission-denied` or `unsupported` before it runs.
            pub fn refusals(self) -> &'static [$crate::Status] {
                match self { $(Op::$op => &[$($crate::Status::$status),*]),* }
            }
        }

        /// A decoded, structurally valid request.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Request {
            $($(#[$doc])* $op { $($field: <$codec as $crate::Codec>::Value),* },)*
        }

        impl Request {
            /// The operation.
            pub fn op(&self) -> Op {
                match self { $(Request::$op { .. } => Op::$op),* }
            }

            /// Checks the request's fields against their ranges: what decoding
            /// guarantees. Hand-built requests can be checked before encoding.
            pub fn validate(&self) -> Result<(), $crate::DecodeError> {
                let mut words = [0u64; $crate::MAX_MESSAGE_WORDS];
                let (label, count) = self.encode_unchecked(&mut words);
                Request::decode(label, &words[..count]).map(|_| ())
            }

            /// Writes the request into `out` (at least
            /// [`MAX_MESSAGE_WORDS`](crate::MAX_MESSAGE_WORDS) long). Returns
            /// the label and the register count. Out-of-range fields are
            /// written as given; the server will refuse them.
            #[allow(unused_assignments, unused_mut)]
            pub fn encode_unchecked(&self, out: &mut [u64]) -> (u64, usize) {
                out[0] = $crate::header_word();
                match self {
                    $(Request::$op { $($field),* } => {
                        let mut i = 1;
                        $(out[i] = <$codec as $crate::Codec>::encode($field); i += 1;)*
                        (Op::$op as u64, i)
                    })*
                }
            }

            /// Decodes a request from its label and message registers.
            #[allow(unused_assignments, unused_mut, unused_variables)]
            pub fn decode(label: u64, words: &[u64]) -> Result<Request, $crate::DecodeError> {
                let op = Op::from_label(label)
                    .ok_or($crate::DecodeError::UnknownLabel { label })?;
                let expected = op.request_words();
                if words.len() != expected {
                    return Err($crate::DecodeError::WrongCount { expected, found: words.len() });
                }
                $crate::check_header(words[0])?;
                match op {
                    $(Op::$op => {
                        let mut i = 1;
                        $(let $field = <$codec as $crate::Codec>::decode(i, words[i])?; i += 1;)*
                        Ok(Request::$op { $($field),* })
                    })*
                }
            }
        }

        /// What the server returns for each operation.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Response { $($op($reply),)* }

        impl Response {
            /// The operation this answers.
            pub fn op(&self) -> Op {
                match self { $(Response::$op(_) => Op::$op),* }
            }

            /// Writes the reply registers; returns the count. The label is
            /// [`Status::Ok`](crate::Status::Ok).
            pub fn encode(&self, out: &mut [u64]) -> usize {
                match self {
                    $(Response::$op(reply) => {
                        $crate::Message::encode(reply, out);
                        <$reply as $crate::Message>::WORDS.len()
                    })*
                }
            }

            /// Decodes the reply to `op` from its label and registers: the
            /// server's answer, or a [`DecodeError`](crate::DecodeError) if the
            /// reply itself is malformed.
            pub fn decode(
                op: Op,
                label: u64,
                words: &[u64],
            ) -> Result<Result<Response, $crate::Error>, $crate::DecodeError> {
                if let Some(error) = $crate::decode_refusal(label, words)? {
                    return Ok(Err(error));
                }
                let expected = op.reply_layout().len();
                if words.len() != expected {
                    return Err($crate::DecodeError::WrongCount { expected, found: words.len() });
                }
                Ok(Ok(match op {
                    $(Op::$op => Response::$op(<$reply as $crate::Message>::decode(words)?),)*
                }))
            }
        }

        /// The client side: one method per operation, over any transport.
        /// Each returns `Err(Stopped)` if the caller was stopped while
        /// blocked, `Ok(Err(error))` for a refusal, and `Ok(Ok(reply))`.
        pub trait Api: $crate::Transport {
            $(
                $(#[$doc])*
                fn $snake(
                    &self,
                    cx: &mut Self::Context<'_>,
                    $($field: <$codec as $crate::Codec>::Value),*
                ) -> Result<Result<$reply, $crate::Error>, Self::Stopped> {
                    Ok(self.transact(cx, Request::$op { $($field),* })?.and_then(|response| {
                        match response {
                            Response::$op(reply) => Ok(reply),
                            // The transport decodes the reply as this
                            // operation's, so no other variant arrives.
                            #[allow(unreachable_patterns)]
                            _ => Err($crate::Error::bare($crate::Status::Malformed)),
                        }
                    }))
                }
            )*
        }

        impl<T: $crate::Transport + ?Sized> Api for T {}

        /// The server side: one method per operation. A client's operations
        /// receive the calling client's id; the fault handler's receive only
        /// their arguments. [`dispatch`] has checked who is calling.
        pub trait Serve {
            $($crate::__serve_method! {
                $who, $(#[$doc])* $snake ($($field: <$codec as $crate::Codec>::Value),*) -> $reply
            })*
        }

        /// Runs `request` from `caller` on `server`: refuses an operation the
        /// caller may not ask for (`permission-denied`), and calls the
        /// operation's method otherwise.
        pub fn dispatch<S: Serve + ?Sized>(
            server: &mut S,
            caller: $crate::Caller,
            request: Request,
        ) -> Result<Response, $crate::Error> {
            let op = request.op();
            let result = match request {
                $(Request::$op { $($field),* } => $crate::__dispatch_call!(
                    $who, server, caller, op, $snake ($($field),*)
                ).map(Response::$op),)*
            };
            if let Err(error) = &result {
                debug_assert!(
                    error.status == $crate::Status::PermissionDenied
                        || error.status == $crate::Status::Unsupported
                        || error.status == $crate::Status::Malformed
                        || op.refusals().contains(&error.status),
                    "{} refused with {}, which the protocol table does not list for it",
                    op.name(),
                    error.status.name()
                );
            }
            result
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __serve_method {
    (Client, $(#[$doc:meta])* $snake:ident ($($field:ident : $ty:ty),*) -> $reply:ty) => {
        $(#[$doc])*
        fn $snake(&mut self, client: $crate::ClientId $(, $field: $ty)*) -> Result<$reply, $crate::Error>;
    };
    (FaultHandler, $(#[$doc:meta])* $snake:ident ($($field:ident : $ty:ty),*) -> $reply:ty) => {
        $(#[$doc])*
        fn $snake(&mut self $(, $field: $ty)*) -> Result<$reply, $crate::Error>;
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __dispatch_call {
    (Client, $server:ident, $caller:ident, $op:ident, $snake:ident ($($field:ident),*)) => {
        match $caller {
            $crate::Caller::Client(client) => $server.$snake(client $(, $field)*),
            $crate::Caller::FaultHandler => Err($crate::Error::permission_denied($op as u64)),
        }
    };
    (FaultHandler, $server:ident, $caller:ident, $op:ident, $snake:ident ($($field:ident),*)) => {
        match $caller {
            $crate::Caller::FaultHandler => $server.$snake($($field),*),
            $crate::Caller::Client(_) => Err($crate::Error::permission_denied($op as u64)),
        }
    };
}
