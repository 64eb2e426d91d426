//! `#[message_controller(..)]` with any argument tokens, and `#[on(..)]` with
//! any tokens, plain or in the invisible groups of `macro_rules!` fragments:
//! the macro never panics (its error collector included), and what it emits
//! is Rust that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outbox_fuzz::input::MacroInput;
use outbox_fuzz::tokens::lex;
use quote::quote;

fuzz_target!(|data: &[u8]| {
    let Some(input) = MacroInput::read(data) else {
        return;
    };
    let Some(args) = lex(input.part(0), input.flags) else {
        return;
    };
    let on = match input.part(1) {
        "" => None,
        text => match lex(text, input.flags) {
            Some(tokens) => Some(quote!(#[on(#tokens)])),
            None => return,
        },
    };
    let item = quote! {
        impl UsersController {
            async fn before_update(&self, _ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
                Ok(user)
            }
            async fn after_destroy(&self, _ctx: &mut Context<'_>, id: &<User as Outboxed>::Key) -> Result<(), HandlerError> {
                Ok(())
            }
            #on
            async fn password_reset(&self, _ctx: &mut Context<'_>, msg: &Message) -> Result<(), HandlerError> {
                Ok(())
            }
        }
    };
    let output = outbox_fuzz::message_controller(args, item);
    if let Err(error) = syn::parse2::<syn::File>(output.clone()) {
        panic!("the macro emitted tokens that do not parse ({error}): {output}");
    }
});
