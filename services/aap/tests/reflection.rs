//! What grpcurl does without proto files, done over the same server reflection protocol:
//! `list` (every service), `describe` (a message's descriptor with its documentation), on v1
//! and v1alpha (older grpcurl builds speak only v1alpha).

mod common;

use common::*;
use prost::Message as _;
use prost_types::FileDescriptorProto;
use tonic_reflection::pb::{v1, v1alpha};

async fn v1_call(
    app: &TestApp,
    request: v1::server_reflection_request::MessageRequest,
) -> v1::server_reflection_response::MessageResponse {
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1::ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let mut replies =
        client.server_reflection_info(tokio_stream::iter([request])).await.expect("reflection").into_inner();
    replies.message().await.expect("reply").expect("one reply").message_response.expect("a response")
}

#[tokio::test]
async fn grpcurl_list_and_describe_work_without_proto_files() {
    let app = spawn_app().await;

    // grpcurl list: no token needed for reflection and health, as for grpcurl's first look.
    let v1::server_reflection_response::MessageResponse::ListServicesResponse(list) =
        v1_call(&app, v1::server_reflection_request::MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list")
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for wanted in
        ["aap.v1.AnswersService", "aap.v1.EvaluationService", "aap.v1.SessionService", "grpc.health.v1.Health"]
    {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }

    // grpcurl describe aap.v1.AnswerEvent: the file that defines it, with its comments.
    let v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files) =
        v1_call(&app, v1::server_reflection_request::MessageRequest::FileContainingSymbol("aap.v1.AnswerEvent".into()))
            .await
    else {
        panic!("not a file descriptor")
    };
    let files: Vec<FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|b| FileDescriptorProto::decode(b.as_slice()).expect("descriptor"))
        .collect();
    let answers = files.iter().find(|f| f.name() == "aap/v1/answers.proto").expect("answers.proto served");
    assert!(answers.message_type.iter().any(|m| m.name() == "AnswerEvent"));
    let comments: Vec<&str> = answers
        .source_code_info
        .as_ref()
        .expect("documentation kept")
        .location
        .iter()
        .filter_map(|l| l.leading_comments.as_deref())
        .collect();
    assert!(comments.iter().any(|c| c.contains("Asks a prompt")), "the service is documented: {comments:?}");

    // The v1alpha protocol lists the same.
    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let reply = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1alpha reflection")
        .into_inner()
        .message()
        .await
        .expect("reply")
        .and_then(|r| r.message_response);
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) = reply else {
        panic!("v1alpha: not a service list")
    };
    assert!(list.service.iter().any(|s| s.name == "aap.v1.AnswersService"));
}

#[tokio::test]
async fn reflection_describes_the_error_details_so_grpcurl_shows_field_violations() {
    let app = spawn_app().await;
    // grpcurl and buf curl look the type of each error detail up by reflection; one they cannot
    // find is printed as base64, and the field a BadRequest names is lost to the caller.
    let response = v1_call(
        &app,
        v1::server_reflection_request::MessageRequest::FileContainingSymbol("google.rpc.BadRequest".into()),
    )
    .await;
    let v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files) = response else {
        panic!("google.rpc.BadRequest is not served: {response:?}")
    };
    let files: Vec<FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|b| FileDescriptorProto::decode(b.as_slice()).expect("descriptor"))
        .collect();
    let details = files.iter().find(|f| f.package() == "google.rpc").expect("the google.rpc file");
    assert!(details.message_type.iter().any(|m| m.name() == "BadRequest"), "{:?}", details.name());
}
