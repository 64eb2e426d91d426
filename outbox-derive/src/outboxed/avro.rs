//! `#[outbox(avro)]`: the per-version field lists the runtime turns into an
//! Avro record schema and a JSON Schema (`outbox::avro`), the trait methods
//! that hand them out, and the Avro datum's writer and reader: each field in
//! the version's order, by its type's `AvroField` encoding, or through its
//! JSON for `avro_type` fields (and unions reordered for a default). The
//! rules on names, aliases and defaults live in the runtime, where they are
//! unit-tested; this side only lists fields.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use proc_macro2::Ident;
use quote::format_ident;
use syn::ext::IdentExt;

use super::expand::{default_helper_name, deserialize_helper_name, serialize_helper_name};
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
    let writes = model
        .versions
        .iter()
        .map(|&version| write_version(model, version, model_name, private));
    let reads = model
        .versions
        .iter()
        .map(|&version| read_version(model, version, model_name, private));
    let reads_from = model
        .versions
        .iter()
        .map(|&version| read_from_version(model, version, model_name, private));
    let methods = quote! {
        fn avro_schema(__version: u32) -> #private::Result<&'static str, #private::Error> {
            #lookup.map(|__built| __built.avro.as_str())
        }

        fn json_schema(__version: u32) -> #private::Result<&'static #private::Value, #private::Error> {
            #lookup.map(|__built| &__built.json)
        }

        fn write_avro(
            &self,
            __version: u32,
            __out: &mut #private::Vec<u8>,
        ) -> #private::Result<(), #private::Error> {
            let __built = #lookup?;
            match __version {
                #(#writes)*
                // `lookup` has refused every other version.
                _ => #private::Ok(()),
            }
        }

        fn read_avro_from(
            __writer: &#private::avro::WriterSchema,
            __version: u32,
            __datum: &[u8],
        ) -> #private::Result<Self, #private::Error> {
            let __built = #lookup?;
            match __version {
                #(#reads_from)*
                _ => #private::Err(#private::avro::field_error(#model_name, __version, "", "no such version")),
            }
        }

        fn read_avro(
            __version: u32,
            __datum: &[u8],
        ) -> #private::Result<Self, #private::Error> {
            let __built = #lookup?;
            let mut __reader = #private::avro::AvroReader::new(__datum);
            match __version {
                #(#reads)*
                _ => #private::Err(#private::avro::field_error(#model_name, __version, "", "no such version")),
            }
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

/// The fields `version` carries, with their index in its schema.
fn carried<'m, 'a>(
    model: &'m Model<'a>,
    version: u32,
) -> impl Iterator<Item = (usize, &'m ModelField<'a>, &'m str)> {
    model
        .fields
        .iter()
        .filter_map(move |field| Some((field, field.wire.get(&version)?.as_str())))
        .enumerate()
        .map(|(index, (field, wire))| (index, field, wire))
}

/// `N => { write each field; Ok(()) }`.
fn write_version(
    model: &Model<'_>,
    version: u32,
    model_name: &str,
    private: &TokenStream,
) -> TokenStream {
    let fields = carried(model, version).map(|(index, field, wire)| {
        let ident = field.ident;
        // Through its `Serialize` straight into the datum; a `with` module
        // (generic over the serializer) likewise, through a `Serialize` that
        // calls it (both fall back to the field's JSON for shapes the direct
        // writer leaves out).
        let write = match &field.with {
            Some(_) => {
                let serialize = serialize_helper_name(field);
                let ty = field.ty;
                quote! {{
                    struct __OutboxWith<'__outbox>(&'__outbox #ty);
                    impl #private::serde::Serialize for __OutboxWith<'_> {
                        fn serialize<__S: #private::serde::Serializer>(
                            &self,
                            __serializer: __S,
                        ) -> #private::Result<__S::Ok, __S::Error> {
                            #serialize(&self.0, __serializer)
                        }
                    }
                    #private::avro::write_serialized(__codec, &__OutboxWith(&self.#ident), __out)
                }}
            }
            None => quote!(#private::avro::write_serialized(__codec, &self.#ident, __out)),
        };
        let bridged = quote! {
            #write.map_err(|__e| #private::avro::field_error(#model_name, #version, #wire, __e))?;
        };
        let write = if field.avro_type.is_some() {
            bridged
        } else {
            let ty = field.ty;
            let direct = quote_spanned!(ty.span()=> <#ty as #private::avro::AvroField>::write_avro(&self.#ident, __out));
            quote! {
                if __codec.bridge {
                    #bridged
                } else {
                    #direct;
                }
            }
        };
        quote! {{
            let __codec = #private::avro::field(__built, #index, #model_name, #version)?;
            #write
        }}
    });
    quote! {
        #version => {
            #(#fields)*
            #private::Ok(())
        }
    }
}

/// The arm of a version that cannot be read: a field it does not carry has
/// no default (the JSON side refuses it likewise).
fn unreadable(
    model: &Model<'_>,
    version: u32,
    model_name: &str,
    private: &TokenStream,
) -> Option<TokenStream> {
    let missing = model
        .fields
        .iter()
        .find(|f| !f.skip && !f.wire.contains_key(&version) && f.default.is_none())?;
    let reason = format!(
        "version {version} does not carry field `{}`, which has no default",
        missing.ident.unraw()
    );
    Some(quote! {
        #version => #private::Err(#private::avro::field_error(#model_name, #version, "", #reason)),
    })
}

fn local(field: &ModelField<'_>) -> Ident {
    format_ident!("__outbox_field_{}", field.ident.unraw())
}

/// `N => { read each field in order; the rest from defaults; Ok(Self { .. }) }`.
fn read_version(
    model: &Model<'_>,
    version: u32,
    model_name: &str,
    private: &TokenStream,
) -> TokenStream {
    if let Some(arm) = unreadable(model, version, model_name, private) {
        return arm;
    }
    let reads = carried(model, version).map(|(index, field, wire)| {
        let ty = field.ty;
        let local = local(field);
        let value = field_read(field, index, version, wire, model_name, private);
        quote! {
            let #local: #ty = #value;
        }
    });
    let inits = model.fields.iter().map(|field| {
        let ident = field.ident;
        if field.wire.contains_key(&version) {
            let local = local(field);
            quote!(#ident: #local)
        } else {
            let default = default_helper_name(field);
            quote!(#ident: #default())
        }
    });
    quote! {
        #version => {
            #(#reads)*
            #private::avro::finish(&__reader, #model_name, #version)?;
            #private::Ok(Self { #(#inits,)* })
        }
    }
}

/// The expression reading field `index` of `version` by the field's own
/// encoding (or through JSON, when the built schema says so), from `__reader`.
fn field_read(
    field: &ModelField<'_>,
    index: usize,
    version: u32,
    wire: &str,
    model_name: &str,
    private: &TokenStream,
) -> TokenStream {
    let ty = field.ty;
    let from_json = from_json(field, version, wire, model_name, private);
    let bridged = quote! {{
        let __json = #private::avro::read_bridged(__codec, &mut __reader)
            .map_err(|__e| #private::avro::field_error(#model_name, #version, #wire, __e))?;
        #from_json
    }};
    let value = if field.avro_type.is_some() {
        bridged
    } else {
        let direct = quote_spanned!(ty.span()=> <#ty as #private::avro::AvroField>::read_avro(&mut __reader));
        quote! {
            if __codec.bridge {
                #bridged
            } else {
                #direct.map_err(|__e| #private::avro::field_error(#model_name, #version, #wire, __e))?
            }
        }
    };
    quote! {{
        let __codec = #private::avro::field(__built, #index, #model_name, #version)?;
        #value
    }}
}

/// The field from `__json` (a `serde_json::Value`), through its `with` module or `Deserialize`.
fn from_json(
    field: &ModelField<'_>,
    version: u32,
    wire: &str,
    model_name: &str,
    private: &TokenStream,
) -> TokenStream {
    let ty = field.ty;
    let read = match &field.with {
        Some(_) => {
            let deserialize = deserialize_helper_name(field);
            quote!(#deserialize(__json))
        }
        None => quote!(#private::serde_json::from_value::<#ty>(__json)),
    };
    quote!(#read.map_err(|__e| #private::avro::field_error(#model_name, #version, #wire, __e))?)
}

/// `N => { plan; read the writer's fields as it says; defaults; Ok(Self { .. }) }`.
fn read_from_version(
    model: &Model<'_>,
    version: u32,
    model_name: &str,
    private: &TokenStream,
) -> TokenStream {
    if let Some(arm) = unreadable(model, version, model_name, private) {
        return arm;
    }
    let names = carried(model, version).map(|(_, field, wire)| {
        let aliases = field.wire.values().filter(|other| *other != wire);
        quote!(&[#wire #(, #aliases)*])
    });
    let slots = carried(model, version).map(|(_, field, _)| {
        let (ty, local) = (field.ty, local(field));
        quote!(let mut #local: #private::Option<#ty> = #private::None;)
    });
    let arms = carried(model, version).map(|(index, field, wire)| {
        let local = local(field);
        let direct = field_read(field, index, version, wire, model_name, private);
        let from_json = from_json(field, version, wire, model_name, private);
        let with = field.with.is_some();
        quote! {
            #index => {
                #local = #private::Some(if __direct {
                    #direct
                } else {
                    let __json = __writer.read_json(__node, #with, &mut __reader)
                        .map_err(|__e| #private::avro::field_error(#model_name, #version, #wire, __e))?;
                    #from_json
                });
            }
        }
    });
    let inits = model.fields.iter().map(|field| {
        let ident = field.ident;
        match field.wire.get(&version) {
            Some(wire) => {
                let local = local(field);
                // Absent from the writer: the plan has checked there is a default.
                let absent = match &field.default {
                    Some(_) => {
                        let default = default_helper_name(field);
                        quote!(#default())
                    }
                    None => {
                        let from_json = from_json(field, version, wire, model_name, private);
                        quote!({ let __json = #private::Value::Null; #from_json })
                    }
                };
                quote!(#ident: match #local { #private::Some(__value) => __value, #private::None => #absent })
            }
            None => {
                let default = default_helper_name(field);
                quote!(#ident: #default())
            }
        }
    });
    quote! {
        #version => {
            let __plan = __writer.plan::<Self>(#version, #model_name, __built, &[#(#names),*])?;
            let mut __reader = #private::avro::AvroReader::new(__datum);
            #(#slots)*
            for __step in &__plan.steps {
                match *__step {
                    #private::avro::Step::Skip(__node) => __writer
                        .skip(__node, &mut __reader)
                        .map_err(|__e| #private::avro::field_error(#model_name, #version, "(the writer's)", __e))?,
                    #private::avro::Step::Field { field: __field, direct: __direct, node: __node } => match __field {
                        #(#arms)*
                        _ => {}
                    },
                }
            }
            #private::avro::finish(&__reader, #model_name, #version)?;
            #private::Ok(Self { #(#inits,)* })
        }
    }
}
