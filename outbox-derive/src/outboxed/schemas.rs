//! `#[outbox(avro)]`: the per-version field lists the runtime turns into an
//! Avro record schema and a JSON Schema (`outbox::avro`), and the trait
//! methods that hand them out. The rules on names, aliases and defaults live
//! in the runtime, where they are unit-tested; this side only lists fields.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::expand::{default_helper_name, serialize_helper_name};
use super::validate::{AvroModel, Model, ModelField};

/// The items beside the views (the cache and the field lists) and the
/// methods of the `Outboxed` impl; nothing without `avro`.
pub(crate) fn expand(model: &Model<'_>, private: &TokenStream) -> (TokenStream, TokenStream) {
    let Some(avro) = &model.avro else {
        return (TokenStream::new(), TokenStream::new());
    };
    let model_name = model.ident.to_string();
    let model_name = model_name.strip_prefix("r#").unwrap_or(&model_name);
    let records = model
        .versions
        .iter()
        .map(|&version| record(model, avro, version, private));
    let items = quote! {
        static __OUTBOX_SCHEMAS: #private::avro::Cache = #private::avro::Cache::new();

        fn __outbox_schema_specs() -> #private::Vec<(u32, #private::avro::RecordSpec)> {
            #private::vec![#(#records),*]
        }
    };
    let lookup = quote! {
        #private::avro::schemas(
            &__OUTBOX_SCHEMAS,
            #model_name,
            <Self as #private::Outboxed>::VERSIONS,
            __version,
            __outbox_schema_specs,
        )
    };
    let methods = quote! {
        fn avro_schema(__version: u32) -> #private::Result<&'static str, #private::Error> {
            #lookup.map(|__built| __built.avro.as_str())
        }

        fn json_schema(__version: u32) -> #private::Result<&'static #private::Value, #private::Error> {
            #lookup.map(|__built| &__built.json)
        }
    };
    (items, methods)
}

/// `(version, RecordSpec { .. })`: the fields `version` carries, in
/// declaration order.
fn record(model: &Model<'_>, avro: &AvroModel, version: u32, private: &TokenStream) -> TokenStream {
    let (name, namespace) = (&avro.name, &avro.namespace);
    let doc = format!(
        "Payload version {version} of route `{}` on topic `{}`",
        model.route, model.topic
    );
    let fields = model
        .fields
        .iter()
        .filter_map(|field| Some((field, field.wire.get(&version)?)))
        .map(|(field, wire)| field_spec(field, wire, private));
    quote! {
        (#version, #private::avro::RecordSpec {
            name: #name,
            namespace: #namespace,
            doc: #doc,
            fields: #private::vec![#(#fields),*],
        })
    }
}

fn field_spec(field: &ModelField<'_>, wire: &str, private: &TokenStream) -> TokenStream {
    let ty = field.ty;
    let mut aliases: Vec<&str> = Vec::new();
    for other in field.wire.values() {
        if other != wire && !aliases.contains(&other.as_str()) {
            aliases.push(other);
        }
    }
    // The type's mapping, spanned on the type: a type without one is reported
    // there, with `AvroField`'s note on `avro_type`.
    let (avro, json) = match &field.avro_type {
        Some(text) => (
            quote!(#private::avro::parse_avro_type(#text)),
            quote!(#private::None),
        ),
        None => (
            quote_spanned!(ty.span()=> #private::Ok(<#ty as #private::avro::AvroField>::avro_schema())),
            quote_spanned!(ty.span()=> #private::Some(<#ty as #private::avro::AvroField>::json_schema())),
        ),
    };
    let with = field.with.is_some();
    let default = match &field.default {
        None => quote!(#private::None),
        Some(_) => {
            let value = default_helper_name(field);
            let to_json = match &field.with {
                Some(_) => {
                    let serialize = serialize_helper_name(field);
                    quote!(#serialize(&&__value, #private::serde_json::value::Serializer))
                }
                None => quote!(#private::serde_json::to_value(&__value)),
            };
            quote! {{
                let __value = #value();
                #private::Some(#to_json.map_err(|__e| #private::ToString::to_string(&__e)))
            }}
        }
    };
    quote! {
        #private::avro::FieldSpec {
            name: #wire,
            aliases: &[#(#aliases),*],
            avro: #avro,
            json: #json,
            with: #with,
            default: #default,
        }
    }
}
