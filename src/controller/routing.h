#pragma once

// Which reconcile a watched change wakes, as pure functions over the objects (the routing the
// controller manager wires between informers and queues). Never throw on odd objects.

#include <string>
#include <vector>

#include "kube/api.h"

namespace vmimport::controller {

//! The imports ("namespace/name") an image change wakes: its VirtualMachineImport owners.
std::vector<std::string> ImportsOwningImage(const kube::Json& image);
//! True when status.status (clusterReady / clusterNotReady) differs between two versions.
bool SourceReadinessChanged(const kube::Json& old_source, const kube::Json& source);
//! The keys of `imports` whose spec.sourceCluster names `source` (its namespace defaulting to
//! the import's own).
std::vector<std::string> ImportsNamingSource(const std::vector<kube::Json>& imports,
                                             const kube::Json& source);
//! True when metadata.generation moved (a spec change; our status writes do not move it).
bool GenerationChanged(const kube::Json& old_object, const kube::Json& object);

}  // namespace vmimport::controller
