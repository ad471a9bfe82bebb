/*
 * list_folder: one folder's entries, sorted into files, folders and the rest, in one call.
 *
 * Why C: os.scandir gives up and takes back the GIL for every entry and makes a DirEntry
 * object for each; on a library of 100,000 episode files that Python-side work alone cost as
 * much as the kernel's. Here the whole listing (open, fstat, readdir, close) runs without the
 * GIL into one buffer, and only the name strings are made under it.
 *
 * folders.py holds the same function in Python (list_folder_py): the behaviour is defined
 * there, tests run the scanner on both, and a build without a C compiler uses it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What each name is, stored as the byte before it in the buffer. */
enum { KIND_FILE = 'f', KIND_FOLDER = 'd', KIND_OTHER = 'o' };

typedef struct {
    char *data;
    size_t used;
    size_t size;
} Buffer;

/* Appends kind, the name and its NUL; -1 when memory runs out. Called without the GIL. */
static int
buffer_add(Buffer *buffer, char kind, const char *name, size_t length)
{
    size_t needed = buffer->used + length + 2;
    if (needed > buffer->size) {
        size_t size = buffer->size ? buffer->size : 4096;
        while (size < needed) {
            size *= 2;
        }
        char *data = realloc(buffer->data, size);
        if (data == NULL) {
            return -1;
        }
        buffer->data = data;
        buffer->size = size;
    }
    buffer->data[buffer->used++] = kind;
    memcpy(buffer->data + buffer->used, name, length + 1);
    buffer->used += length + 1;
    return 0;
}

/* What os.DirEntry would answer: is_dir(follow_symlinks=False), else is_file(), else other. */
static char
kind_of(int folder, const struct dirent *entry)
{
    struct stat st;
    switch (entry->d_type) {
    case DT_DIR:
        return KIND_FOLDER;
    case DT_REG:
        return KIND_FILE;
    case DT_UNKNOWN: /* file systems that do not fill d_type: ask, without following */
        if (fstatat(folder, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            return KIND_OTHER;
        }
        if (S_ISDIR(st.st_mode)) {
            return KIND_FOLDER;
        }
        if (S_ISREG(st.st_mode)) {
            return KIND_FILE;
        }
        if (!S_ISLNK(st.st_mode)) {
            return KIND_OTHER;
        }
        /* a symlink counts as a file when it leads to one */
        __attribute__((fallthrough));
    case DT_LNK:
        if (fstatat(folder, entry->d_name, &st, 0) == 0 && S_ISREG(st.st_mode)) {
            return KIND_FILE;
        }
        return KIND_OTHER;
    default: /* fifos, sockets, devices */
        return KIND_OTHER;
    }
}

/* Lists path into buffer and fills st; returns 0 or an errno. Called without the GIL. */
static int
read_folder(const char *path, int follow_symlinks, struct stat *st, Buffer *buffer)
{
    /* O_NONBLOCK: never wait on a fifo left where a folder was (O_DIRECTORY refuses it). */
    int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK;
    int fd = open(path, follow_symlinks ? flags : flags | O_NOFOLLOW);
    if (fd < 0) {
        int error = errno;
        struct stat link;
        /* A symlink where a folder was is no folder, as lstat shows: say so, not "too many
           levels of symbolic links" (which a loop higher up the path still says). */
        if (error == ELOOP && !follow_symlinks && lstat(path, &link) == 0
            && S_ISLNK(link.st_mode)) {
            return ENOTDIR;
        }
        return error;
    }
    if (fstat(fd, st) != 0) {
        int error = errno;
        close(fd);
        return error;
    }
    DIR *folder = fdopendir(fd);
    if (folder == NULL) {
        int error = errno;
        close(fd);
        return error;
    }
    int error = 0;
    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(folder);
        if (entry == NULL) {
            error = errno;
            break;
        }
        const char *name = entry->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) {
            continue;
        }
        char kind = kind_of(dirfd(folder), entry);
        if (buffer_add(buffer, kind, name, strlen(name)) != 0) {
            error = ENOMEM;
            break;
        }
    }
    closedir(folder);
    return error;
}

/* seconds and nanoseconds as one int of nanoseconds, exact as os.stat's st_*_ns. */
static PyObject *
nanoseconds(long long seconds, long nanos)
{
    PyObject *result = NULL;
    PyObject *s = PyLong_FromLongLong(seconds);
    PyObject *billion = PyLong_FromLong(1000000000L);
    PyObject *n = PyLong_FromLong(nanos);
    if (s != NULL && billion != NULL && n != NULL) {
        PyObject *product = PyNumber_Multiply(s, billion);
        if (product != NULL) {
            result = PyNumber_Add(product, n);
            Py_DECREF(product);
        }
    }
    Py_XDECREF(s);
    Py_XDECREF(billion);
    Py_XDECREF(n);
    return result;
}

/* (st_mode, st_ino, st_size, st_mtime_ns, st_ctime_ns) of one stat. */
static PyObject *
stat_of(const struct stat *st)
{
    return Py_BuildValue(
        "(kKLNN)",
        (unsigned long)st->st_mode,
        (unsigned long long)st->st_ino,
        (long long)st->st_size,
        nanoseconds((long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec),
        nanoseconds((long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec));
}

static PyObject *
result_of(const struct stat *st, const char *data, size_t length)
{
    PyObject *files = PyList_New(0);
    PyObject *folders = PyList_New(0);
    PyObject *others = PyList_New(0);
    PyObject *stamp = NULL;
    if (files == NULL || folders == NULL || others == NULL) {
        goto error;
    }
    for (size_t at = 0; at < length;) {
        char kind = data[at++];
        size_t size = strlen(data + at);
        /* As os.fsdecode: names that are not UTF-8 keep their bytes as lone surrogates. */
        PyObject *name = PyUnicode_DecodeFSDefaultAndSize(data + at, (Py_ssize_t)size);
        if (name == NULL) {
            goto error;
        }
        PyObject *into = kind == KIND_FILE ? files : kind == KIND_FOLDER ? folders : others;
        int failed = PyList_Append(into, name);
        Py_DECREF(name);
        if (failed) {
            goto error;
        }
        at += size + 1;
    }
    stamp = stat_of(st);
    if (stamp == NULL) {
        goto error;
    }
    return Py_BuildValue("(NNNN)", stamp, files, folders, others);
error:
    Py_XDECREF(files);
    Py_XDECREF(folders);
    Py_XDECREF(others);
    Py_XDECREF(stamp);
    return NULL;
}

/* The OSError that os.scandir would raise (OSError picks the subclass from errno). */
static PyObject *
error_of(int error, PyObject *path)
{
    if (error == ENOMEM) {
        return PyErr_NoMemory();
    }
    return PyObject_CallFunction(PyExc_OSError, "isO", error, strerror(error), path);
}

/* One folder of a batch: where its names are in the shared buffer, or why it has none. */
typedef struct {
    const char *path;
    struct stat st;
    size_t start;
    size_t end;
    int error;
} Entry;

/* list_folders and stat_paths: one pass over the paths without the GIL, then the results. */
static PyObject *
batch(PyObject *paths, int listing, int follow_symlinks)
{
    if (PyUnicode_Check(paths) || PyBytes_Check(paths)) {
        PyErr_SetString(PyExc_TypeError, "a list of paths is needed, not one path");
        return NULL;
    }
    /* A tuple of our own: the caller's list may change while a path's __fspath__ runs or
       while the GIL is released, and items[] must stay valid throughout. */
    PyObject *sequence = PySequence_Tuple(paths);
    if (sequence == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(sequence);
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    PyObject *encoded = PyList_New(count);
    Entry *entries = PyMem_Calloc(count ? (size_t)count : 1, sizeof(Entry));
    PyObject *results = NULL;
    Buffer buffer = {NULL, 0, 0};
    if (encoded == NULL || entries == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *bytes = NULL;
        if (PyBytes_Check(items[i])) {
            PyErr_SetString(PyExc_TypeError, "paths must be str");
            goto done;
        }
        if (!PyUnicode_FSConverter(items[i], &bytes)) {
            goto done;
        }
        PyList_SET_ITEM(encoded, i, bytes);
        entries[i].path = PyBytes_AS_STRING(bytes);
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        Entry *entry = &entries[i];
        if (listing) {
            entry->start = buffer.used;
            entry->error = read_folder(entry->path, follow_symlinks, &entry->st, &buffer);
            entry->end = buffer.used;
        }
        else {
            int failed = follow_symlinks ? stat(entry->path, &entry->st)
                                         : lstat(entry->path, &entry->st);
            entry->error = failed ? errno : 0;
        }
    }
    Py_END_ALLOW_THREADS
    results = PyList_New(count);
    if (results == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        Entry *entry = &entries[i];
        PyObject *one = entry->error ? error_of(entry->error, items[i])
                        : listing
                            ? result_of(&entry->st, buffer.data + entry->start,
                                        entry->end - entry->start)
                            : stat_of(&entry->st);
        if (one == NULL) {
            Py_CLEAR(results);
            goto done;
        }
        PyList_SET_ITEM(results, i, one);
    }
done:
    free(buffer.data);
    PyMem_Free(entries);
    Py_XDECREF(encoded);
    Py_DECREF(sequence);
    return results;
}

/* One folder: a batch of one, its error raised. */
static PyObject *
list_folder(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"path", "follow_symlinks", NULL};
    PyObject *path = NULL;
    int follow_symlinks = 0;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "O|$p:list_folder", keywords, &path, &follow_symlinks)) {
        return NULL;
    }
    PyObject *paths = PyTuple_Pack(1, path);
    if (paths == NULL) {
        return NULL;
    }
    PyObject *results = batch(paths, 1, follow_symlinks);
    Py_DECREF(paths);
    if (results == NULL) {
        return NULL;
    }
    PyObject *result = PyList_GET_ITEM(results, 0);
    Py_INCREF(result);
    Py_DECREF(results);
    if (PyExceptionInstance_Check(result)) {
        PyErr_SetObject((PyObject *)Py_TYPE(result), result);
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *
list_folders(PyObject *module, PyObject *paths)
{
    return batch(paths, 1, 0);
}

static PyObject *
stat_paths(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"paths", "follow_symlinks", NULL};
    PyObject *paths = NULL;
    int follow_symlinks = 0;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "O|$p:stat_paths", keywords, &paths, &follow_symlinks)) {
        return NULL;
    }
    return batch(paths, 0, follow_symlinks);
}

static PyMethodDef methods[] = {
    {"list_folder", (PyCFunction)(void (*)(void))list_folder, METH_VARARGS | METH_KEYWORDS,
     "list_folder(path, *, follow_symlinks=False) -> (stat, files, folders, others)"},
    {"list_folders", list_folders, METH_O,
     "list_folders(paths) -> [list_folder(path) or the OSError it raises, for each path]"},
    {"stat_paths", (PyCFunction)(void (*)(void))stat_paths, METH_VARARGS | METH_KEYWORDS,
     "stat_paths(paths, *, follow_symlinks=False) -> "
     "[(mode, ino, size, mtime_ns, ctime_ns) or the OSError, for each path]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "aniworld_addon.library._folders",
    "One folder's entries in one call (see folders.py).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__folders(void)
{
    return PyModule_Create(&module);
}
