//! The bundled reference ztunnel, configured like upstream ztunnel through the environment
//! (`LOCAL_XDS_PATH`, `PROXY_MODE=dedicated`, `PROXY_WORKLOAD_INFO`, ...).

fn main() {
    if let Err(e) = meshcert_ztunnel::run_from_env() {
        eprintln!("meshcert-ztunnel: {e}");
        std::process::exit(1);
    }
}
