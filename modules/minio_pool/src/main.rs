fn main() -> std::process::ExitCode {
    matrix_ha_runtime::main(&minio_pool::SPEC, minio_pool::run)
}
