//! Writes the `Outboxed` impl from a checked [`Model`]. Cannot fail.
//!
//! Per version, small serde views of the model do the work: a borrowed one to
//! serialize (so the fast path is serde's own speed), an owned one to read a
//! payload back, and key-only views for destroyed messages. Field values go
//! through their own `Serialize`/`Deserialize` (or the `with` module).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, Lifetime, LitStr, Path};

use super::attr::{Destroyed, FieldDefault};
use super::validate::{Model, ModelField, PartitionKey};
use crate::hygiene::{call_site_at, resolving_as};

pub(crate) fn expand(model: &Model<'_>) -> TokenStream {
    let krate = &model.krate;
    let private = quote!(#krate::__private);
    let ident = model.ident;
    let name = ident.unraw().to_string();
    let topic = &model.topic;
    let route = &model.route;
    let versions = &model.versions;
    let cx = Expander {
        model,
        private: private.clone(),
        serde_crate: LitStr::new(SERDE_ALIAS, Span::call_site()),
        name: &name,
    };

    let serde_alias = Ident::new(SERDE_ALIAS, Span::call_site());
    let with_helpers = model.fields.iter().filter_map(|f| cx.with_helpers(f));
    let default_helpers = model.fields.iter().filter_map(|f| cx.default_helper(f));
    let full_payloads = model.payload_with.is_none();
    let keys_only = full_payloads && model.destroyed == Destroyed::Keys;
    let ser_views = versions
        .iter()
        .filter(|_| full_payloads)
        .map(|&v| cx.ser_view(v, false));
    let key_ser_views = versions
        .iter()
        .filter(|_| keys_only)
        .map(|&v| cx.ser_view(v, true));
    let de_views = versions
        .iter()
        .filter(|&&v| cx.readable(v))
        .map(|&v| cx.de_view(v, false));
    let key_de_views = versions.iter().map(|&v| cx.de_view(v, true));

    let key_types = model.key_fields.iter().map(|&i| model.fields[i].ty);
    let key_type = if model.key_fields.len() == 1 {
        let ty = model.fields[model.key_fields[0]].ty;
        quote!(#ty)
    } else {
        quote!((#(#key_types,)*))
    };

    let (receiver, partition_key) = cx.partition_key();
    let (to_payload, write_payload) = cx.to_payload_bodies();
    let from_payload = cx.read_payload_body();
    let key_from_payload = cx.key_read_payload_body();
    let (schema_items, schema_methods) = super::avro::expand(model, &private);
    let format = model
        .avro_on_wire
        .then(|| quote!(const FORMAT: #krate::Format = #krate::Format::Avro;));
    let (version_items, versioned_row) = cx.version_items();
    let columns_not_carried = cx.columns_not_carried();

    quote! {
        // The views repeat the model's field names and types: lints about those
        // are the model's, reported once on it.
        #[doc(hidden)]
        #[allow(non_snake_case, deprecated, clippy::trivially_copy_pass_by_ref, clippy::question_mark_used)]
        const _: () = {
            use #private::serde as #serde_alias;
            #(#with_helpers)*
            #(#default_helpers)*
            #(#ser_views)*
            #(#key_ser_views)*
            #(#de_views)*
            #(#key_de_views)*
            #schema_items

            #[automatically_derived]
            impl #krate::Outboxed for #ident {
                const TOPIC: &'static str = #topic;
                const ROUTE: &'static str = #route;
                const VERSIONS: &'static [u32] = &[#(#versions),*];
                #format
                type Key = #key_type;

                fn partition_key(&#receiver) -> #private::String {
                    #partition_key
                }

                #version_items

                #columns_not_carried

                fn to_payload(
                    &self,
                    __event: &#private::Event,
                    __version: u32,
                ) -> #private::Result<#private::Value, #private::Error> {
                    #to_payload
                }

                fn write_payload(
                    &self,
                    __event: &#private::Event,
                    __version: u32,
                    __out: &mut #private::Vec<u8>,
                ) -> #private::Result<(), #private::Error> {
                    #write_payload
                }

                fn from_payload(
                    __event: &#private::Event,
                    __version: u32,
                    __payload: &#private::Value,
                ) -> #private::Result<Self, #private::Error> {
                    #from_payload
                }

                fn key_from_payload(
                    __version: u32,
                    __payload: &#private::Value,
                ) -> #private::Result<Self::Key, #private::Error> {
                    #key_from_payload
                }

                #schema_methods
            }

            #versioned_row
        };
    }
}

/// The function that adapts a `with` module to a borrowed view's `&&T`.
pub(super) fn serialize_helper_name(field: &ModelField<'_>) -> Ident {
    format_ident!("__outbox_serialize_{}", field.ident.unraw())
}

/// The function that reads a `with` field through its module.
pub(super) fn deserialize_helper_name(field: &ModelField<'_>) -> Ident {
    format_ident!("__outbox_deserialize_{}", field.ident.unraw())
}

/// The function giving a field's default (`default`, `default = path`, `skip`).
pub(super) fn default_helper_name(field: &ModelField<'_>) -> Ident {
    format_ident!("__outbox_default_{}", field.ident.unraw())
}

/// Stub impl emitted beside errors, so one mistake does not cascade into
/// "`Outboxed` is not implemented" errors wherever the model is used.
///
/// For a model with a version field, a stub of the database side too, so a
/// controller's `gap` is not reported as well.
pub(crate) fn fallback(ident: &Ident, krate: &Path, versioned: bool) -> TokenStream {
    let private = quote!(#krate::__private);
    let versioned_row = versioned.then(|| {
        quote! {
            #private::diesel_only! {
                #[automatically_derived]
                impl #private::VersionedRow for #ident {
                    fn stored_version<'__outbox>(
                        &'__outbox self,
                        _: &'__outbox mut #private::diesel_async::AsyncPgConnection,
                    ) -> #private::BoxFuture<'__outbox, #private::diesel::result::QueryResult<#private::Option<i64>>> {
                        ::core::unreachable!()
                    }
                    fn stored_version_of<'__outbox>(
                        _: &'__outbox Self::Key,
                        _: &'__outbox mut #private::diesel_async::AsyncPgConnection,
                    ) -> #private::BoxFuture<'__outbox, #private::diesel::result::QueryResult<#private::Option<i64>>> {
                        ::core::unreachable!()
                    }
                    fn version_from_payload(_: u32, _: &#private::Value) -> #private::Result<#private::Option<i64>, #private::Error> {
                        ::core::unreachable!()
                    }
                }
            }
        }
    });
    quote! {
        #versioned_row
        #[automatically_derived]
        impl #krate::Outboxed for #ident {
            const TOPIC: &'static str = "";
            const ROUTE: &'static str = "";
            const VERSIONS: &'static [u32] = &[1];
            type Key = ();
            fn partition_key(&self) -> #private::String { ::core::unreachable!() }
            fn to_payload(&self, _: &#private::Event, _: u32) -> #private::Result<#private::Value, #private::Error> { ::core::unreachable!() }
            fn write_payload(&self, _: &#private::Event, _: u32, _: &mut #private::Vec<u8>) -> #private::Result<(), #private::Error> { ::core::unreachable!() }
            fn from_payload(_: &#private::Event, _: u32, _: &#private::Value) -> #private::Result<Self, #private::Error> { ::core::unreachable!() }
            fn key_from_payload(_: u32, _: &#private::Value) -> #private::Result<Self::Key, #private::Error> { ::core::unreachable!() }
        }
    }
}

/// Which fields a view holds.
#[derive(Clone, Copy)]
enum View {
    /// Every field the version carries.
    Full,
    /// The primary key: what `key_from_payload` reads.
    Keys,
    /// The primary key and the version field: what a keys-only destroyed
    /// payload carries.
    Destroyed,
}

impl View {
    fn written(keys: bool) -> Self {
        if keys { View::Destroyed } else { View::Full }
    }

    fn read(keys: bool) -> Self {
        if keys { View::Keys } else { View::Full }
    }
}

/// What the views' `#[serde(crate = "..")]` names: an alias of the re-exported
/// serde, because serde reads that path from a string, where `crate = $crate::..`
/// (a re-exporting library's generator) cannot be written.
const SERDE_ALIAS: &str = "__outbox_serde";

struct Expander<'m, 'a> {
    model: &'m Model<'a>,
    private: TokenStream,
    serde_crate: LitStr,
    name: &'m str,
}

impl Expander<'_, '_> {
    fn ser_view_name(version: u32, keys: bool) -> Ident {
        if keys {
            format_ident!("__OutboxKeySerV{}", version)
        } else {
            format_ident!("__OutboxSerV{}", version)
        }
    }

    fn de_view_name(version: u32, keys: bool) -> Ident {
        if keys {
            format_ident!("__OutboxKeyDeV{}", version)
        } else {
            format_ident!("__OutboxDeV{}", version)
        }
    }

    /// The fields a view of `version` holds: all it carries, or the key
    /// fields (with the version field, if any, in a view that writes a
    /// destroyed payload: the consumer compares it with its row's).
    fn view_fields(&self, version: u32, keys: View) -> Vec<(&ModelField<'_>, &str)> {
        let fields = &self.model.fields;
        let version_field = self.model.version.as_ref().map(|v| v.index);
        let chosen: Vec<&ModelField<'_>> = match keys {
            View::Full => fields.iter().collect(),
            View::Keys => self.model.key_fields.iter().map(|&i| &fields[i]).collect(),
            View::Destroyed => (self.model.key_fields.iter().copied())
                .chain(version_field)
                .map(|i| &fields[i])
                .collect(),
        };
        chosen
            .into_iter()
            .filter_map(|f| f.wire.get(&version).map(|wire| (f, wire.as_str())))
            .collect()
    }

    /// A version can be read back when every field it does not carry has a default.
    fn readable(&self, version: u32) -> bool {
        self.missing_without_default(version).is_none()
    }

    fn missing_without_default(&self, version: u32) -> Option<&ModelField<'_>> {
        self.model
            .fields
            .iter()
            .find(|f| !f.skip && !f.wire.contains_key(&version) && f.default.is_none())
    }

    /// Functions calling the `with` module, so the views name them rather
    /// than the user's path: serde reads a path from a string, which would
    /// lose where the path resolves (`$crate::..` from a generator cannot be
    /// written in one). Spanned on the path, so a module of the wrong type is
    /// reported there.
    fn with_helpers(&self, field: &ModelField<'_>) -> Option<TokenStream> {
        let with = field.with.as_ref()?;
        let private = &self.private;
        let serialize = serialize_helper_name(field);
        let deserialize = deserialize_helper_name(field);
        let ty = field.ty;
        // Declared and used under the one span, these names agree in any expansion.
        Some(quote_spanned! {with.span()=>
            #[allow(dead_code)]
            fn #serialize<__S: #private::serde::Serializer>(
                __value: &&#ty,
                __serializer: __S,
            ) -> #private::Result<__S::Ok, __S::Error> {
                #with::serialize(*__value, __serializer)
            }

            #[allow(dead_code)]
            fn #deserialize<'__de, __D: #private::serde::Deserializer<'__de>>(
                __deserializer: __D,
            ) -> #private::Result<#ty, __D::Error> {
                // A module of another type is reported as "expected the field's type".
                let __value: #ty = #with::deserialize(__deserializer)?;
                #private::Ok(__value)
            }
        })
    }

    /// The value of a field a version does not carry: its `default = path`, or
    /// `Default::default()` (for `default` and `skip`). Spanned on the user's
    /// tokens, so a missing `Default` impl is reported at the field.
    fn default_helper(&self, field: &ModelField<'_>) -> Option<TokenStream> {
        if field.default.is_none() && !field.skip {
            return None;
        }
        let private = &self.private;
        let name = default_helper_name(field);
        let ty = field.ty;
        let value = match &field.default {
            Some(FieldDefault::Path(path)) => {
                // `Self` in the attribute means the model, not a generated view.
                let path = replace_self(path, self.model.ident);
                quote_spanned!(path.span()=> #path())
            }
            _ => quote_spanned!(ty.span()=> <#ty as #private::Default>::default()),
        };
        Some(quote! {
            #[allow(dead_code)]
            fn #name() -> #ty {
                #value
            }
        })
    }

    fn ser_view(&self, version: u32, keys: bool) -> TokenStream {
        let private = &self.private;
        let serde_crate = &self.serde_crate;
        let view = Self::ser_view_name(version, keys);
        let fields = self
            .view_fields(version, View::written(keys))
            .into_iter()
            .map(|(field, wire)| {
                let ident = field.ident;
                let ty = field.ty;
                let with = field.with.as_ref().map(|with| {
                    let helper = serialize_helper_name(field).to_string();
                    let helper = LitStr::new(&helper, call_site_at(with.span()));
                    quote!(#[serde(serialize_with = #helper)])
                });
                // Spanned on the field's type, so "`T: Serialize` is not satisfied"
                // points at the field, not at the derive.
                // The lifetime is the view's: reported at the type, resolved where declared.
                let lifetime = Lifetime::new("'__outbox", call_site_at(ty.span()));
                let borrowed = quote_spanned!(ty.span()=> &#lifetime #ty);
                quote!(#[serde(rename = #wire)] #with #ident: #borrowed)
            });
        quote! {
            #[derive(#private::serde::Serialize)]
            #[serde(crate = #serde_crate)]
            struct #view<'__outbox> {
                #(#fields,)*
            }
        }
    }

    fn de_view(&self, version: u32, keys: bool) -> TokenStream {
        let private = &self.private;
        let serde_crate = &self.serde_crate;
        let view = Self::de_view_name(version, keys);
        let fields =
            self.view_fields(version, View::read(keys))
                .into_iter()
                .map(|(field, wire)| {
                    let ident = field.ident;
                    let ty = field.ty;
                    let with = field.with.as_ref().map(|with| {
                        let helper = deserialize_helper_name(field).to_string();
                        let helper = LitStr::new(&helper, call_site_at(with.span()));
                        quote!(#[serde(deserialize_with = #helper)])
                    });
                    let default = field.default.as_ref().map(|_| {
                        let helper = default_helper_name(field).to_string();
                        let helper = LitStr::new(&helper, call_site_at(field.ident.span()));
                        quote!(#[serde(default = #helper)])
                    });
                    quote!(#[serde(rename = #wire)] #with #default #ident: #ty)
                });
        quote! {
            #[derive(#private::serde::Deserialize)]
            #[serde(crate = #serde_crate)]
            struct #view {
                #(#fields,)*
            }
        }
    }

    /// The receiver of `partition_key` and its body. A body reported at the
    /// user's tokens names `self` there, so the receiver is declared resolving
    /// as those tokens do (see `crate::hygiene`).
    fn partition_key(&self) -> (Ident, TokenStream) {
        let private = &self.private;
        match &self.model.partition_key {
            PartitionKey::With(path) => {
                let span = path.span();
                let this = Ident::new("self", span);
                (receiver(span), quote_spanned!(span=> #path(#this)))
            }
            PartitionKey::Fields(indices) if indices.len() == 1 => {
                let field = &self.model.fields[indices[0]];
                let ident = field.ident;
                let span = field.ty.span();
                let this = Ident::new("self", span);
                let body = quote_spanned!(span=> #private::ToString::to_string(&#this.#ident));
                (receiver(span), body)
            }
            PartitionKey::Fields(indices) => {
                let format = vec!["{}"; indices.len()].join(":");
                let idents = indices.iter().map(|&i| self.model.fields[i].ident);
                let body = quote!(#private::format!(#format, #(self.#idents),*));
                (Ident::new("self", Span::call_site()), body)
            }
        }
    }

    /// For a model with `#[outbox(version)]`: `VERSION_FIELD` and `version`
    /// in the `Outboxed` impl, and the impl of `VersionedRow` (the row's
    /// stored version, read by primary key `FOR UPDATE`), which only an
    /// `outbox` built with Diesel gets.
    fn version_items(&self) -> (TokenStream, TokenStream) {
        let Some(version) = &self.model.version else {
            return (TokenStream::new(), TokenStream::new());
        };
        let private = &self.private;
        let ident = self.model.ident;
        let name = self.name;
        let field = &self.model.fields[version.index];
        let (member, ty) = (field.ident, field.ty);
        let field_name = member.unraw().to_string();
        // Spanned on the field's type: a type that is no version is reported there.
        let to_i64 = quote_spanned!(ty.span()=> <#ty as #private::VersionField>::to_i64);
        let items = quote! {
            const VERSION_FIELD: #private::Option<&'static str> = #private::Some(#field_name);

            fn version(&self) -> #private::Option<i64> {
                #private::Some(#to_i64(&self.#member))
            }
        };

        let (table, column) = (&version.table, &version.column);
        let keys: Vec<&Ident> = self
            .model
            .key_fields
            .iter()
            .map(|&i| self.model.fields[i].ident)
            .collect();
        let (of_self, of_key) = if keys.len() == 1 {
            let key = keys[0];
            (quote!(&self.#key), quote!(__outbox_key))
        } else {
            let bindings: Vec<Ident> = (0..keys.len())
                .map(|i| format_ident!("__outbox_key_{}", i))
                .collect();
            (
                quote!((#(&self.#keys,)*)),
                quote! {{
                    let (#(#bindings,)*) = __outbox_key;
                    (#(#bindings,)*)
                }},
            )
        };
        let conn = quote!(#private::diesel_async::AsyncPgConnection);
        let returns = quote! {
            #private::BoxFuture<'__outbox, #private::diesel::result::QueryResult<#private::Option<i64>>>
        };
        let select = |key: TokenStream| {
            quote! {
                let __outbox_query = #private::diesel::QueryDsl::for_update(
                    #private::diesel::QueryDsl::select(
                        #private::diesel::QueryDsl::find(#table::table, #key),
                        #table::#column,
                    ),
                );
                ::std::boxed::Box::pin(async move {
                    let __outbox_row: #private::Option<#ty> = #private::diesel::result::OptionalExtension::optional(
                        #private::diesel_async::RunQueryDsl::first::<#ty>(__outbox_query, __outbox_conn).await,
                    )?;
                    #private::Ok(#private::Option::map(__outbox_row, |__outbox_version| {
                        #to_i64(&__outbox_version)
                    }))
                })
            }
        };
        let (by_self, by_key) = (select(of_self), select(of_key));
        let krate = &self.model.krate;
        let wire_names = field.wire.iter().map(|(v, wire)| quote!(#v => #wire,));
        let row = quote! {
            #private::diesel_only! {
                #[automatically_derived]
                impl #private::VersionedRow for #ident {
                    fn stored_version<'__outbox>(
                        &'__outbox self,
                        __outbox_conn: &'__outbox mut #conn,
                    ) -> #returns {
                        #by_self
                    }

                    fn stored_version_of<'__outbox>(
                        __outbox_key: &'__outbox Self::Key,
                        __outbox_conn: &'__outbox mut #conn,
                    ) -> #returns {
                        #by_key
                    }

                    fn version_from_payload(
                        __version: u32,
                        __payload: &#private::Value,
                    ) -> #private::Result<#private::Option<i64>, #private::Error> {
                        let __outbox_name = match __version {
                            #(#wire_names)*
                            _ => return #private::Err(#private::unknown_version(
                                #name,
                                __version,
                                <Self as #krate::Outboxed>::VERSIONS,
                            )),
                        };
                        #private::read_version(#name, __version, &#private::Event::Destroyed, __payload, __outbox_name)
                    }
                }
            }
        };
        (items, row)
    }

    /// `columns_not_carried`, when some version leaves a field out (the
    /// trait's default, empty, otherwise): per version, the columns of the
    /// fields it does not carry, in declaration order.
    fn columns_not_carried(&self) -> Option<TokenStream> {
        let arms: Vec<TokenStream> = self
            .model
            .versions
            .iter()
            .filter_map(|version| {
                let columns: Vec<&str> = self
                    .model
                    .fields
                    .iter()
                    .filter(|field| !field.wire.contains_key(version))
                    .map(|field| field.column.as_str())
                    .collect();
                (!columns.is_empty()).then(|| quote!(#version => &[#(#columns),*],))
            })
            .collect();
        if arms.is_empty() {
            return None;
        }
        Some(quote! {
            fn columns_not_carried(__version: u32) -> &'static [&'static str] {
                match __version {
                    #(#arms)*
                    _ => &[],
                }
            }
        })
    }

    fn unknown_version(&self) -> TokenStream {
        let private = &self.private;
        let name = self.name;
        let krate = &self.model.krate;
        quote! {
            _ => #private::Err(#private::unknown_version(
                #name,
                __version,
                <Self as #krate::Outboxed>::VERSIONS,
            ))
        }
    }

    /// The bodies of `to_payload` and `write_payload`.
    fn to_payload_bodies(&self) -> (TokenStream, TokenStream) {
        let private = &self.private;
        let name = self.name;
        let unknown = self.unknown_version();
        let krate = &self.model.krate;
        if let Some(path) = &self.model.payload_with {
            let to_payload = quote! {
                if !<[u32]>::contains(<Self as #krate::Outboxed>::VERSIONS, &__version) {
                    return match __version { #unknown };
                }
                #path(self, __event, __version)
            };
            let write_payload = quote! {
                let __value = <Self as #krate::Outboxed>::to_payload(self, __event, __version)?;
                #private::write(#name, __version, __event, &__value, __out)
            };
            return (to_payload, write_payload);
        }

        let keys_only = self.model.destroyed == Destroyed::Keys;
        let body = |sink: TokenStream, extra: TokenStream| {
            let arms = self.model.versions.iter().map(|&version| {
                let construct = |keys: bool| {
                    let view = Self::ser_view_name(version, keys);
                    let fields = self
                        .view_fields(version, View::written(keys))
                        .into_iter()
                        .map(|(f, _)| f.ident);
                    quote!(#view { #(#fields: &self.#fields,)* })
                };
                let full = construct(false);
                let destroyed = keys_only.then(|| {
                    let keys = construct(true);
                    quote! {
                        if let #private::Event::Destroyed = __event {
                            return #private::#sink(#name, #version, __event, &#keys #extra);
                        }
                    }
                });
                quote! {
                    #version => {
                        #destroyed
                        #private::#sink(#name, #version, __event, &#full #extra)
                    }
                }
            });
            quote! {
                match __version {
                    #(#arms)*
                    #unknown,
                }
            }
        };
        (
            body(quote!(to_value), quote!()),
            body(quote!(write), quote!(, __out)),
        )
    }

    fn read_payload_body(&self) -> TokenStream {
        let private = &self.private;
        let name = self.name;
        let ident = self.model.ident;
        let unknown = self.unknown_version();
        let keys_only =
            self.model.destroyed == Destroyed::Keys && self.model.payload_with.is_none();
        let guard = keys_only.then(|| {
            quote! {
                if let #private::Event::Destroyed = __event {
                    return #private::Err(#private::keys_only(#name));
                }
            }
        });
        let arms = self.model.versions.iter().map(|&version| {
            if let Some(missing) = self.missing_without_default(version) {
                let field = missing.ident.unraw().to_string();
                return quote! {
                    #version => #private::Err(#private::not_carried(#name, #version, __event, #field)),
                };
            }
            let view = Self::de_view_name(version, false);
            let fields = self.model.fields.iter().map(|field| {
                let member = field.ident;
                if field.wire.contains_key(&version) {
                    quote!(#member: __view.#member)
                } else {
                    let helper = default_helper_name(field);
                    quote!(#member: #helper())
                }
            });
            quote! {
                #version => {
                    let __view: #view = #private::read(#name, #version, __event, __payload)?;
                    #private::Ok(#ident { #(#fields,)* })
                }
            }
        });
        quote! {
            #guard
            match __version {
                #(#arms)*
                #unknown,
            }
        }
    }

    fn key_read_payload_body(&self) -> TokenStream {
        let private = &self.private;
        let name = self.name;
        let unknown = self.unknown_version();
        let arms = self.model.versions.iter().map(|&version| {
            let view = Self::de_view_name(version, true);
            let members = self.model.key_fields.iter().map(|&i| self.model.fields[i].ident);
            let key = if self.model.key_fields.len() == 1 {
                quote!(#(__key.#members)*)
            } else {
                quote!((#(__key.#members,)*))
            };
            quote! {
                #version => {
                    let __key: #view = #private::read(#name, #version, &#private::Event::Destroyed, __payload)?;
                    #private::Ok(#key)
                }
            }
        });
        quote! {
            match __version {
                #(#arms)*
                #unknown,
            }
        }
    }
}

/// `self`, declared at the call site, resolving as the tokens at `span`.
fn receiver(span: Span) -> Ident {
    Ident::new("self", resolving_as(span))
}

/// `Self::f` → `Model::f`.
fn replace_self(path: &Path, model: &Ident) -> Path {
    let mut path = path.clone();
    if let Some(first) = path.segments.first_mut()
        && first.ident == "Self"
    {
        first.ident = Ident::new(&model.to_string(), first.ident.span());
    }
    path
}
