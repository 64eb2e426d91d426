//! Writes the impl block back and the `outbox::Controller` impl from a
//! checked [`Model`]. Cannot fail.
//!
//! Calls to the user's methods are spanned on the user's tokens (the return
//! type for the call, each parameter's type for its argument), and the upsert
//! and delete on the `model` argument, so a type error points at the code to
//! fix rather than at the attribute.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, ItemImpl, Type};

use super::attr::Gap;
use super::validate::{Call, Handling, Model};
use crate::hygiene::{resolving_as, self_at};

/// The generated code's own locals, `__outbox_*` as the style asks. They are
/// reported at the user's tokens (the `model` argument, a hook's parameter
/// types), so they resolve as the `model` argument does rather than at the
/// call site or with `Span::mixed_site()`: rustc reports an expression at the
/// join of its tokens' spans only when they share one resolution, so `&model`
/// with a local of another would move a type error from the user's `model`
/// argument to the whole attribute. Every use keeps that resolution
/// ([`located`]), so inside a `macro_rules!`, where the `model` argument and
/// the call site can resolve differently, declaration and uses still agree
/// (see `crate::hygiene`).
struct Names {
    ctx: Ident,
    message: Ident,
    event: Ident,
    name: Ident,
    model: Ident,
    key: Ident,
    /// The payload version the model was read as.
    version: Ident,
}

impl Names {
    fn new(model: &Type) -> Self {
        let span = resolving_as(model.span());
        let ident = |name: &str| Ident::new(name, span);
        Names {
            ctx: ident("__outbox_ctx"),
            message: ident("__outbox_message"),
            event: ident("__outbox_event"),
            name: ident("__outbox_name"),
            model: ident("__outbox_model"),
            key: ident("__outbox_key"),
            version: ident("__outbox_payload_version"),
        }
    }
}

/// What the third argument of a call is.
enum Argument {
    /// The model, moved (`before_` hooks of created/updated).
    Model,
    /// `&model` (`after_` hooks of created/updated).
    ModelRef,
    /// `&key` (destroyed hooks).
    KeyRef,
    /// The message (replaced events, custom events).
    Message,
}

pub(crate) fn expand(model: &Model<'_>, item: &ItemImpl) -> TokenStream {
    let names = Names::new(&model.model);
    let Names {
        ctx,
        message,
        event,
        name,
        ..
    } = &names;
    let self_ty = model.self_ty;
    let outboxed = outboxed(&model.model);
    let route = match &model.route {
        Some(route) => quote!(#route),
        None => quote!(#outboxed::ROUTE),
    };
    let topic = match &model.topic {
        Some(topic) => quote!(#topic),
        None => quote!(#outboxed::TOPIC),
    };
    let strict = model.strict;

    let custom_names = model.custom.iter().map(|c| &c.name);
    let handles = if model.custom.is_empty() {
        quote!(!::core::matches!(#event, ::outbox::Event::Custom(_)))
    } else {
        quote! {
            match #event {
                ::outbox::Event::Custom(#name) => ::core::matches!(
                    ::outbox::EventName::as_str(#name),
                    #(#custom_names)|*
                ),
                _ => true,
            }
        }
    };

    let group = group_methods(model);
    let created = upsert_arm(model, &model.created, &names);
    let updated = upsert_arm(model, &model.updated, &names);
    let destroyed = destroy_arm(model, &names);
    let custom_arm = if model.custom.is_empty() {
        quote!(::outbox::Event::Custom(_) => ::core::result::Result::Ok(()),)
    } else {
        let arms = model.custom.iter().map(|custom| {
            let event = &custom.name;
            let call = call(&custom.call, Argument::Message, &names);
            quote! {
                #event => {
                    let () = #call;
                    ::core::result::Result::Ok(())
                }
            }
        });
        quote! {
            ::outbox::Event::Custom(#name) => match ::outbox::EventName::as_str(#name) {
                #(#arms)*
                // `handles` accepts only the names above.
                _ => ::core::result::Result::Ok(()),
            },
        }
    };

    let gap_check = gap_check(model);

    quote! {
        #item

        const _: () = {
            #gap_check

            #[automatically_derived]
            impl ::outbox::Controller for #self_ty {
                fn route(&self) -> &str {
                    #route
                }

                fn topics(&self) -> &[&str] {
                    const TOPICS: &[&str] = &[#topic];
                    TOPICS
                }

                fn handles(&self, #event: &::outbox::Event) -> bool {
                    #handles
                }

                fn strict(&self) -> bool {
                    #strict
                }

                fn handle<'__outbox>(
                    &'__outbox self,
                    #ctx: &'__outbox mut ::outbox::Context<'_>,
                    #message: &'__outbox ::outbox::Message,
                ) -> ::outbox::BoxFuture<'__outbox, ::core::result::Result<(), ::outbox::HandlerError>> {
                    ::std::boxed::Box::pin(async move {
                        match &#message.event {
                            ::outbox::Event::Created => #created,
                            ::outbox::Event::Updated => #updated,
                            ::outbox::Event::Destroyed => #destroyed,
                            #custom_arm
                        }
                    })
                }

                #group
            }
        };
    }
}

/// Whether `handling` is the built-in upsert with no hook: what a group's
/// one statement can do for every message.
fn groupable(handling: &Handling<'_>) -> bool {
    matches!(
        handling,
        Handling::BuiltIn {
            before: None,
            after: None
        }
    )
}

/// `groups` and `handle_group`, when created or updated is groupable: each
/// message's model is read, then consecutive rows whose upserts set the same
/// columns (each inserted with its value; without the columns their payload
/// version does not carry) and have distinct keys go in one multi-row upsert
/// (`SET c = excluded.c`), any other row alone with the statements `handle`
/// runs. Spanned on the `model` argument like the upsert.
fn group_methods(model: &Model<'_>) -> TokenStream {
    let (created, updated) = (groupable(&model.created), groupable(&model.updated));
    if !model.group || !(created || updated) {
        return TokenStream::new();
    }
    let ty = &model.model;
    let table = &model.table;
    let span = ty.span();
    let outboxed = outboxed(ty);
    let local = |name: &str| Ident::new(name, resolving_as(span));
    let (event, conn, messages, rows, keys, signatures, chunks, index, message, row, chunk, set) = (
        local("__outbox_event"),
        local("__outbox_conn"),
        local("__outbox_messages"),
        local("__outbox_rows"),
        local("__outbox_keys"),
        local("__outbox_signatures"),
        local("__outbox_chunks"),
        local("__outbox_index"),
        local("__outbox_message"),
        local("__outbox_row"),
        local("__outbox_chunk"),
        local("__outbox_set"),
    );
    let (versions, version) = (
        local("__outbox_versions"),
        local("__outbox_payload_version"),
    );
    let upsert = |values: TokenStream, changes: TokenStream| {
        quote_spanned! {span=>
            ::outbox::__private::diesel::insert_into(#table::table)
                .values(#values)
                .on_conflict(::outbox::__private::diesel::Table::primary_key(&#table::table))
                .do_update()
                .set(#changes)
        }
    };
    let row_ref = borrow_at(&row, span);
    let own_upsert = upsert(row_ref.clone(), row_ref.clone());
    let (at_chunk, at_set, at_row, at_version) = (
        located(&chunk, span),
        located(&set, span),
        located(&row, span),
        located(&version, span),
    );
    let group_upsert = upsert(quote!(#at_chunk), quote!(#at_set));
    // JSON or Avro alike, with one decode of the payload. A row's signature
    // leaves out the columns its payload version does not carry.
    let read = quote_spanned! {span=>
        let (#row, __outbox_key): (#ty, #outboxed::Key) = ::core::result::Result::map_err(
            ::outbox::Message::read_with_key::<#ty>(#message),
            ::outbox::__private::at(#index),
        )?;
        let #version: u32 = ::core::result::Result::map_err(
            ::outbox::Message::reader_version::<#ty>(#message),
            ::outbox::__private::at(#index),
        )?;
        #signatures.push(::outbox::__private::carried_signature::<#ty, _>(#at_version, &#own_upsert));
        #keys.push(__outbox_key);
        #versions.push(#version);
        #rows.push(#row);
    };
    let execute = |statement: TokenStream| {
        quote_spanned! {span=>
            ::core::result::Result::map_err(
                ::outbox::__private::diesel_async::RunQueryDsl::execute(#statement, &mut *#conn).await,
                ::outbox::GroupError::Database,
            )?
        }
    };
    let execute_alone = upsert_statements(model, &quote!(#at_row), &at_version, execute);
    let execute_group = execute(group_upsert);
    let guards = local("__outbox_guards");
    let probe = version_guards(ty, &guards);
    quote! {
        fn groups(&self, #event: &::outbox::Event) -> bool {
            // A model with a version field is applied one message at a time,
            // each through the version check of `handle`.
            #probe
            ::core::option::Option::is_none(&#guards) && match #event {
                ::outbox::Event::Created => #created,
                ::outbox::Event::Updated => #updated,
                _ => false,
            }
        }

        fn handle_group<'__outbox>(
            &'__outbox self,
            #conn: &'__outbox mut ::outbox::__private::diesel_async::AsyncPgConnection,
            #messages: &'__outbox [&'__outbox ::outbox::Message],
        ) -> ::outbox::BoxFuture<'__outbox, ::core::result::Result<(), ::outbox::GroupError>> {
            ::std::boxed::Box::pin(async move {
                // The keys are only compared, before any statement: not held across
                // an await. The borrow of `KeyProbe` picks the specialization.
                #[allow(clippy::needless_borrow)]
                let (#rows, #versions, #signatures, #chunks) = {
                    #[allow(unused_imports)]
                    use ::outbox::__private::{KeyEq as _, KeyEqFallback as _};
                    let mut #rows: ::std::vec::Vec<#ty> = ::std::vec::Vec::with_capacity(#messages.len());
                    let mut #keys: ::std::vec::Vec<#outboxed::Key> = ::std::vec::Vec::with_capacity(#messages.len());
                    let mut #versions: ::std::vec::Vec<u32> = ::std::vec::Vec::with_capacity(#messages.len());
                    let mut #signatures: ::std::vec::Vec<::core::option::Option<::outbox::__private::Signature>> =
                        ::std::vec::Vec::with_capacity(#messages.len());
                    for (#index, #message) in ::core::iter::Iterator::enumerate(#messages.iter()) {
                        let #message: &::outbox::Message = #message;
                        #read
                    }
                    let #chunks = ::outbox::__private::chunks(&#signatures, |__outbox_i, __outbox_j| {
                        (&::outbox::__private::KeyProbe(&#keys[__outbox_i], &#keys[__outbox_j])).same_key()
                    });
                    (#rows, #versions, #signatures, #chunks)
                };
                for __outbox_range in #chunks {
                    match &#signatures[__outbox_range.start] {
                        ::core::option::Option::Some(__outbox_signature) if ::core::iter::ExactSizeIterator::len(&__outbox_range) > 1 => {
                            let #set = ::outbox::__private::ExcludedColumns::<#table::table>::new(__outbox_signature);
                            let #chunk: ::std::vec::Vec<&#ty> = ::core::iter::Iterator::collect(#rows[__outbox_range].iter());
                            #execute_group;
                        }
                        _ => {
                            let #row: &#ty = &#rows[__outbox_range.start];
                            let #version: u32 = #versions[__outbox_range.start];
                            #execute_alone
                        }
                    }
                }
                ::core::result::Result::Ok(())
            })
        }
    }
}

/// Stub impl emitted beside errors, so one mistake does not cascade into
/// "`Controller` is not implemented" errors wherever the controller is used.
pub(crate) fn fallback(self_ty: &Type) -> TokenStream {
    quote! {
        const _: () = {
            #[automatically_derived]
            impl ::outbox::Controller for #self_ty {
                fn route(&self) -> &str { ::core::unreachable!() }
                fn topics(&self) -> &[&str] { ::core::unreachable!() }
                fn handles(&self, _: &::outbox::Event) -> bool { ::core::unreachable!() }
                fn handle<'__outbox>(
                    &'__outbox self,
                    _: &'__outbox mut ::outbox::Context<'_>,
                    _: &'__outbox ::outbox::Message,
                ) -> ::outbox::BoxFuture<'__outbox, ::core::result::Result<(), ::outbox::HandlerError>> {
                    ::core::unreachable!()
                }
            }
        };
    }
}

/// `<Model as ::outbox::Outboxed>`, spanned on the `model` argument: a model
/// that does not derive `Outboxed` is reported there.
fn outboxed(ty: &Type) -> TokenStream {
    quote_spanned!(ty.span()=> <#ty as ::outbox::Outboxed>)
}

/// The local `ident`, reported at `span`; it still resolves at the call site,
/// where it was declared.
fn located(ident: &Ident, span: Span) -> Ident {
    let mut ident = ident.clone();
    ident.set_span(ident.span().located_at(span));
    ident
}

/// `&ident`, reported at `span`.
fn borrow_at(ident: &Ident, span: Span) -> TokenStream {
    let ident = located(ident, span);
    quote_spanned!(span=> &#ident)
}

/// `Self::hook(self, ctx, arg).await?`: the call spanned on the method's
/// return type (a wrong `Ok` or error type is reported there), each argument
/// on the type of the parameter it is passed to.
fn call(call: &Call<'_>, argument: Argument, names: &Names) -> TokenStream {
    let output = call.output.span();
    // The method's name too, or the call's span would run from the name to the return type.
    let method = located(call.ident, output);
    let at = |ident: &Ident, ty: &Type| located(ident, ty.span());
    let ctx = at(&names.ctx, call.ctx_ty);
    let arg_span = call.arg_ty.span();
    let arg = match argument {
        Argument::Model => {
            let model = at(&names.model, call.arg_ty);
            quote!(#model)
        }
        Argument::ModelRef => borrow_at(&names.model, arg_span),
        Argument::KeyRef => borrow_at(&names.key, arg_span),
        Argument::Message => {
            let message = at(&names.message, call.arg_ty);
            quote!(#message)
        }
    };
    let this = self_at(output);
    quote_spanned!(output=> Self::#method(#this, #ctx, #arg).await?)
}

/// `let <binding>: <ty> = <read>(message)?`: the model, or its key, read from
/// the message whatever its format (JSON: the payload version both sides
/// know; Avro: the writer's schema resolved into the model's version). A
/// message this release cannot read is a permanent error: retrying does not
/// change it. Spanned on the `model` argument, like everything that needs
/// the model's traits.
fn read_model(model: &Model<'_>, names: &Names, binding: &Ident, key: bool) -> TokenStream {
    let ty = &model.model;
    let message = &names.message;
    let span = ty.span();
    let (read, binding_ty) = if key {
        let outboxed = outboxed(ty);
        (
            quote_spanned!(span=> read_key),
            quote_spanned!(span=> #outboxed::Key),
        )
    } else {
        (quote_spanned!(span=> read), quote_spanned!(span=> #ty))
    };
    quote_spanned! {span=>
        let #binding: #binding_ty = ::core::result::Result::map_err(
            ::outbox::Message::#read::<#ty>(#message),
            ::outbox::HandlerError::permanent,
        )?;
    }
}

/// created/updated: read the model (and the payload version it was read
/// as), `before_`, upsert, `after_`.
fn upsert_arm(model: &Model<'_>, handling: &Handling<'_>, names: &Names) -> TokenStream {
    let (before, after) = match handling {
        Handling::Replaced(replaced) => return replaced_arm(replaced, names),
        Handling::BuiltIn { before, after } => (before, after),
    };
    let Names {
        ctx, model: value, ..
    } = names;
    let ty = &model.model;
    let read = read_model(model, names, value, false);
    let before = before.map(|before| {
        let call = call(&before, Argument::Model, names);
        quote!(let #value: #ty = #call;)
    });
    let after = after.map(|after| {
        let call = call(&after, Argument::ModelRef, names);
        quote!(let () = #call;)
    });
    let span = ty.span();
    let (borrowed, at_ctx) = (borrow_at(value, span), located(ctx, span));
    let guards = Ident::new("__outbox_guards", resolving_as(span));
    let probe = version_guards(ty, &guards);
    let gap = match model.gap.as_ref().map_or(Gap::Wait, |(gap, _)| *gap) {
        Gap::Wait => quote!(Wait),
        Gap::Stop => quote!(Stop),
        Gap::Accept => quote!(Accept),
    };
    let table_name = table_name(model);
    let at_guards = located(&guards, span);
    // Before the `before_` hook: a stale message runs no hook.
    let guard = quote_spanned! {span=>
        #probe
        if !::outbox::__private::guard_upsert(
            #at_ctx,
            #borrowed,
            #at_guards,
            ::outbox::__private::Gap::#gap,
            #table_name,
        )
        .await?
        {
            return ::core::result::Result::Ok(());
        }
    };
    let (version, message) = (&names.version, &names.message);
    let read_version = quote_spanned! {span=>
        let #version: u32 = ::core::result::Result::map_err(
            ::outbox::Message::reader_version::<#ty>(#message),
            ::outbox::HandlerError::permanent,
        )?;
    };
    let upsert = upsert_statements(model, &borrowed, &located(version, span), |statement| {
        quote_spanned! {span=>
            ::outbox::__private::diesel_async::RunQueryDsl::execute(
                #statement,
                ::outbox::Context::conn(#at_ctx),
            )
            .await?
        }
    });
    quote! {{
        #read
        #read_version
        #guard
        #before
        #upsert
        #after
        ::core::result::Result::Ok(())
    }}
}

/// The upsert of `row` (`&model`) read as payload version `version`, each
/// statement run by `execute`: the row's own upsert when its version carries
/// every field, else one whose update leaves the columns it does not carry
/// (`::outbox::__private::update`). Spanned on the `model` argument.
fn upsert_statements(
    model: &Model<'_>,
    row: &TokenStream,
    version: &Ident,
    execute: impl Fn(TokenStream) -> TokenStream,
) -> TokenStream {
    let ty = &model.model;
    let table = &model.table;
    let span = ty.span();
    let own = Ident::new("__outbox_upsert", resolving_as(span));
    let set = Ident::new("__outbox_set", resolving_as(span));
    let (at_own, at_set) = (located(&own, span), located(&set, span));
    let insert = quote_spanned! {span=>
        ::outbox::__private::diesel::insert_into(#table::table)
            .values(#row)
            .on_conflict(::outbox::__private::diesel::Table::primary_key(&#table::table))
    };
    let (run_own, run_nothing, run_set) = (
        execute(quote!(#at_own)),
        execute(quote_spanned!(span=> #insert.do_nothing())),
        execute(quote_spanned!(span=> #insert.do_update().set(#at_set))),
    );
    quote_spanned! {span=>
        let #own = #insert.do_update().set(#row);
        match ::outbox::__private::update::<#ty, #table::table, _>(#version, &#at_own) {
            ::outbox::__private::Update::Own => #run_own,
            ::outbox::__private::Update::Nothing => #run_nothing,
            ::outbox::__private::Update::Columns(#set) => #run_set,
        };
    }
}

/// destroyed: read the key, `before_destroy`, delete, `after_destroy`.
fn destroy_arm(model: &Model<'_>, names: &Names) -> TokenStream {
    let (before, after) = match &model.destroyed {
        Handling::Replaced(replaced) => return replaced_arm(replaced, names),
        Handling::BuiltIn { before, after } => (before, after),
    };
    let Names { ctx, key, .. } = names;
    let ty = &model.model;
    let table = &model.table;
    let read = read_model(model, names, key, true);
    let before = before.map(|before| {
        let call = call(&before, Argument::KeyRef, names);
        quote!(let () = #call;)
    });
    let after_call = after.map(|after| {
        let call = call(&after, Argument::KeyRef, names);
        quote!(let () = #call;)
    });
    let span = ty.span();
    let (at_key, at_ctx) = (located(key, span), located(ctx, span));
    let guards = Ident::new("__outbox_guards", resolving_as(span));
    let probe = version_guards(ty, &guards);
    let at_guards = located(&guards, span);
    // Before `before_destroy`: a stale message runs no hook.
    let guard = quote_spanned! {span=>
        #probe
        if !::outbox::__private::guard_destroy(#at_ctx, #at_guards).await? {
            return ::core::result::Result::Ok(());
        }
    };
    // The key is still needed after the delete only by `after_destroy`.
    let key_value = if after_call.is_some() {
        let borrowed = borrow_at(key, span);
        quote_spanned!(span=> ::core::clone::Clone::clone(#borrowed))
    } else {
        quote!(#at_key)
    };
    let delete = quote_spanned! {span=>
        ::outbox::__private::diesel_async::RunQueryDsl::execute(
            ::outbox::__private::diesel::delete(
                ::outbox::__private::diesel::QueryDsl::find(#table::table, #key_value),
            ),
            ::outbox::Context::conn(#at_ctx),
        )
        .await?;
    };
    quote! {{
        #read
        #guard
        #before
        #delete
        #after_call
        ::core::result::Result::Ok(())
    }}
}

/// `async fn updated(&self, ctx, msg)` and the like handle the whole event.
fn replaced_arm(replaced: &Call<'_>, names: &Names) -> TokenStream {
    let call = call(replaced, Argument::Message, names);
    quote! {{
        let () = #call;
        ::core::result::Result::Ok(())
    }}
}

/// `let <guards> = ..;`: the model's version checks when it has a version
/// field, else `None`, found by autoref specialization (the macro cannot see
/// the model's fields). Spanned on the `model` argument.
fn version_guards(ty: &Type, guards: &Ident) -> TokenStream {
    let span = ty.span();
    quote_spanned! {span=>
        // The borrow picks the specialization.
        #[allow(clippy::needless_borrow)]
        let #guards = {
            #[allow(unused_imports)]
            use ::outbox::__private::{ProbeUnversioned as _, ProbeVersioned as _};
            (&::outbox::__private::VersionProbe::<#ty>::new()).guards()
        };
    }
}

/// The table's name, for errors: the last segment of `table`.
fn table_name(model: &Model<'_>) -> String {
    model
        .table
        .segments
        .last()
        .map(|segment| segment.ident.unraw().to_string())
        .unwrap_or_default()
}

/// With `gap = ".."`: a model without a version field is an error, at the
/// literal (the bound is checked on the model's type, moved there).
fn gap_check(model: &Model<'_>) -> Option<TokenStream> {
    let (_, literal) = model.gap.as_ref()?;
    let span = literal.span();
    let ty = relocate(model.model.to_token_stream(), span);
    Some(quote_spanned! {span=>
        fn __outbox_gap_needs_a_version_field<__M: ::outbox::__private::VersionedRow>() {}
        const _: fn() = __outbox_gap_needs_a_version_field::<#ty>;
    })
}

/// `tokens`, each reported at `span` (resolving as before).
fn relocate(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let proc_macro2::TokenTree::Group(group) = &token {
                let mut moved =
                    proc_macro2::Group::new(group.delimiter(), relocate(group.stream(), span));
                moved.set_span(group.span().located_at(span));
                token = proc_macro2::TokenTree::Group(moved);
            } else {
                token.set_span(token.span().located_at(span));
            }
            token
        })
        .collect()
}
