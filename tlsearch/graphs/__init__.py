"""Graphs: the k-nearest crystal graph, line graph, CGCNN features, disk cache, batches."""
