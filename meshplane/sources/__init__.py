"""Where config and workloads come from: files (watched) or Kubernetes."""
